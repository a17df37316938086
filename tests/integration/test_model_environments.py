"""A model with its own environment (``environment: requirements.txt``) run by the platform, as
a user submits it: built with real uv from real PyPI on the first run, reused by the next
version, rebuilt for a changed requirements file; a build that fails fails the run, saying why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelrunner.artifacts.store import ArtifactStore
from modelrunner.execution.job import AttemptJob
from modelrunner.execution.remote import RemoteJob
from modelrunner.settings import Settings
from modelrunner.spec.model_version import snapshot
from tests.conftest import wait_for_run
from tests.integration.runs_api import logs, submit, write_model

SPEC = "command: [python, model.py]\nenvironment: requirements.txt\noutputs: [{path: joke.txt}]\n"
# pyjokes: small, pure Python, and not among modelrunner's packages.
MODEL = """\
import importlib.metadata
import sys

import pyjokes
from modelrunner import job

print("pyjokes", importlib.metadata.version("pyjokes"), "under", sys.executable)
job.progress(0.5, "telling a joke")
(job.outputs() / "joke.txt").write_text(pyjokes.get_joke())
"""


def test_a_model_runs_in_its_environment_which_versions_sharing_it_reuse(
    client: TestClient, settings: Settings
) -> None:
    folder = write_model(settings.workspace, "jokes", SPEC, {"requirements.txt": "pyjokes==0.8.3\n", "model.py": MODEL})
    builds = settings.state_dir / "environments" / "builds"

    first = wait_for_run(client.get, submit(client, "jokes")["id"], timeout=120)
    assert first["status"] == "succeeded", first["error"]
    text = logs(client, first["id"])
    assert "modelrunner: building the environment requirements.txt" in text
    assert f"pyjokes 0.8.3 under {builds}" in text
    assert [o["path"] for o in first["outputs"]] == ["joke.txt"]

    # A new version (its code changed) with the same requirements: the environment is reused.
    (folder / "model.py").write_text(MODEL + "print('version 2')\n")
    second = wait_for_run(client.get, submit(client, "jokes")["id"], timeout=120)
    assert second["status"] == "succeeded", second["error"]
    assert second["model_version"] != first["model_version"]
    text = logs(client, second["id"])
    assert "is built already" in text and "building the environment" not in text
    assert "version 2" in text
    assert len(list(builds.iterdir())) == 1

    # A changed requirements file is a new version, not a cache hit, and a new environment.
    (folder / "requirements.txt").write_text("pyjokes==0.8.2\n")
    third_submit = submit(client, "jokes")
    assert not third_submit["cache_hit"]
    third = wait_for_run(client.get, third_submit["id"], timeout=120)
    assert third["status"] == "succeeded", third["error"]
    assert third["model_version"] not in (first["model_version"], second["model_version"])
    assert "pyjokes 0.8.2 under" in logs(client, third["id"])
    assert len(list(builds.iterdir())) == 2

    # The same request again is answered from the cache.
    assert submit(client, "jokes")["cache_hit"]


def test_a_build_that_fails_fails_the_run_naming_the_file(client: TestClient, settings: Settings) -> None:
    write_model(
        settings.workspace,
        "unbuildable",
        SPEC,
        {"requirements.txt": "modelrunner-no-such-package-xq7==1.0\n", "model.py": MODEL},
    )

    run = wait_for_run(client.get, submit(client, "unbuildable")["id"], timeout=120)

    assert run["status"] == "failed"
    assert run["error"].startswith("the environment requirements.txt could not be built (uv ended with exit status")
    assert "modelrunner-no-such-package-xq7" in run["error"]
    assert len(run["attempts"]) == 1  # a failure of the model's: retried only as its `retries` say
    text = logs(client, run["id"])
    assert "modelrunner: $ " in text and "modelrunner-no-such-package-xq7" in text
    assert list((settings.state_dir / "environments" / "builds").iterdir()) == []


@pytest.mark.store_free
def test_modelrunner_exec_builds_the_environment_on_its_own_machine(tmp_path: Path) -> None:
    # What every remote backend (a worker, Dask, Slurm, Kubernetes, AWS, Azure) runs.
    store = ArtifactStore(str(tmp_path / "artifacts"))
    folder = tmp_path / "jokes"
    folder.mkdir()
    (folder / "requirements.txt").write_text("pyjokes==0.8.3\n")
    (folder / "model.py").write_text(MODEL)
    job = AttemptJob(
        run_id=7,
        attempt_id=70,
        attempt_number=1,
        model_name="jokes",
        model_version="v1",
        command=["python", "model.py"],
        environment="requirements.txt",
        params={},
        snapshot_uri=store.put_bytes("models/jokes/v1.tar.gz", snapshot(folder)),
        declared_outputs=("joke.txt",),
    )
    machine = tmp_path / "machine-environments"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELRUNNER_")}
    env["MODELRUNNER_JOB"] = RemoteJob(job, store.url, grace_seconds=5).to_json()
    env["MODELRUNNER_ENVIRONMENTS_DIR"] = str(machine)

    for attempt in ("building the environment requirements.txt", "is built already"):
        done = subprocess.run(
            [sys.executable, "-m", "modelrunner", "exec"], capture_output=True, text=True, env=env, timeout=120
        )
        assert json.loads(done.stdout)["status"] == "succeeded", done.stdout + done.stderr
        said = store.get_bytes(store.uri("runs/7/attempts/1/attempt.log")).decode()
        assert attempt in said
        assert f"pyjokes 0.8.3 under {machine}" in said
