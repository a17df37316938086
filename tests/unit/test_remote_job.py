"""The job description a remote runner reads (``modelrunner exec``, workers) carries every model
form: a notebook or an image needs no command of its own."""

from __future__ import annotations

import json

import pytest

from modelrunner.errors import ModelrunnerError
from modelrunner.execution.job import AttemptJob
from modelrunner.execution.remote import RemoteJob, parse_job

pytestmark = pytest.mark.store_free


def _job(**form: object) -> AttemptJob:
    return AttemptJob(
        run_id=1,
        attempt_id=2,
        attempt_number=1,
        model_name="m",
        model_version="v1",
        params={"n": 3},
        snapshot_uri="file:///snapshots/v1.tar.gz",
        **form,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    "form",
    [
        {"command": ["python", "model.py"]},
        {"command": [], "notebook": "analysis.ipynb", "environment": "requirements.txt"},
        {"command": [], "image": "localhost/model@sha256:" + "0" * 64},
        {"command": ["run", "--fast"], "image": "localhost/model:1"},
    ],
)
def test_every_model_form_travels_in_the_job_description(form: dict[str, object]) -> None:
    job = _job(**form)
    assert parse_job(RemoteJob(job, "file:///artifacts", 5.0).to_json()).job == job


def test_a_job_that_starts_nothing_is_refused() -> None:
    described = json.loads(RemoteJob(_job(command=["python"]), "file:///artifacts", 5.0).to_json())
    described["command"] = []
    with pytest.raises(ModelrunnerError, match="no command, notebook or image"):
        parse_job(json.dumps(described))
