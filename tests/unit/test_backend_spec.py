"""``backends:`` in modelrunner.yaml: each type's options, checked by name before anything runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from modelrunner.spec.backend_spec import DaskBackendSpec, LocalBackendSpec
from modelrunner.spec.workspace import Workspace, WorkspaceSpec


def problems_of(tmp_path: Path, backends: str) -> list[str]:
    (tmp_path / "modelrunner.yaml").write_text(f"name: ws\nbackends:\n{backends}", encoding="utf-8")
    return [str(problem) for problem in Workspace(tmp_path).problems()]


def test_a_dask_backend_with_its_options_and_their_defaults() -> None:
    spec = WorkspaceSpec.model_validate(
        {"backends": {"cluster": {"type": "dask", "scheduler": "tcp://10.0.0.5:8786"}, "here": {"slots": 2}}}
    )

    assert spec.backends["cluster"] == DaskBackendSpec(type="dask", scheduler="tcp://10.0.0.5:8786")
    assert spec.backends["cluster"].slots == 4
    assert spec.backends["cluster"].resources == {}
    assert spec.backends["here"] == LocalBackendSpec(slots=2)  # no type: local, as before


def test_check_names_a_misspelt_dask_option(tmp_path: Path) -> None:
    found = problems_of(tmp_path, "  cluster:\n    type: dask\n    schedular: tcp://10.0.0.5:8786\n")

    assert found == [
        "modelrunner.yaml: backends.cluster.scheduler: is required",
        "modelrunner.yaml: backends.cluster.schedular: is not a known field",
    ]


def test_check_names_a_wrong_value_and_an_unknown_type(tmp_path: Path) -> None:
    found = problems_of(
        tmp_path,
        "  cluster:\n    type: dask\n    scheduler: 10.0.0.5\n    slots: 0\n    resources: {GPU: -1}\n"
        "  hpc:\n    type: slurn\n",
    )

    assert found == [
        "modelrunner.yaml: backends.cluster.scheduler: '10.0.0.5' is not a Dask scheduler address like tcp://host:8786",
        "modelrunner.yaml: backends.cluster.slots: Input should be greater than or equal to 1",
        "modelrunner.yaml: backends.cluster.resources: the amount of 'GPU' must be greater than 0",
        "modelrunner.yaml: backends.hpc: type 'slurn' is not one of "
        "'local', 'dask', 'worker', 'aws-ecs', 'aws-batch', 'azure-batch', 'kubernetes', 'slurm', 'container'",
    ]


def test_local_options_do_not_pass_for_dask_ones() -> None:
    with pytest.raises(ValidationError):
        WorkspaceSpec.model_validate({"backends": {"b": {"type": "local", "scheduler": "tcp://h:1"}}})


@pytest.mark.parametrize(
    ("missing", "backend", "extra"),
    [
        ("distributed", "{type: dask, scheduler: 'tcp://127.0.0.1:8786'}", "dask"),
        ("boto3", "{type: aws-batch, job_queue: q, job_definition: d}", "aws"),
        (
            "azure.batch",
            "{type: azure-batch, account_url: 'https://a.westeurope.batch.azure.com', pool_id: p}",
            "azure",
        ),
        ("kubernetes", "{type: kubernetes, image: 'example/models:1'}", "kubernetes"),
    ],
)
def test_without_a_backend_s_library_modelrunner_works_and_the_backend_names_its_extra(
    tmp_path: Path, missing: str, backend: str, extra: str
) -> None:
    (tmp_path / "modelrunner.yaml").write_text(f"name: ws\nbackends:\n  remote: {backend}\n", encoding="utf-8")
    script = f"""
import sys
sys.modules[{missing!r}] = None  # as if it were not installed
import modelrunner.cli.main, modelrunner.platform, modelrunner.api.app
from modelrunner.errors import ModelrunnerError
from modelrunner.platform import Platform
from modelrunner.settings import Settings
from modelrunner.spec.workspace import Workspace
from pathlib import Path
assert Workspace(Path({str(tmp_path)!r})).problems() == []
try:
    Platform(Settings(workspace={str(tmp_path)!r}, data_dir={str(tmp_path / "state")!r}))
except ModelrunnerError as exc:
    print(exc.message)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELRUNNER_")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)

    assert done.returncode == 0, done.stderr
    assert f"pip install 'modelrunner[{extra}]'" in done.stdout
