"""``type: slurm`` in modelrunner.yaml, and how an attempt's resources become sbatch options."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelrunner.artifacts.logs import LogStore
from modelrunner.artifacts.store import ArtifactStore
from modelrunner.backends.base import RemoteServices
from modelrunner.backends.slurm import SlurmBackend, slurm_memory, slurm_minutes
from modelrunner.errors import ModelrunnerError
from modelrunner.execution.job import AttemptJob
from modelrunner.spec.backend_spec import SlurmBackendSpec, SlurmClassSpec
from modelrunner.spec.model_spec import Resources
from modelrunner.spec.workspace import Workspace, WorkspaceSpec


def problems_of(tmp_path: Path, backends: str) -> list[str]:
    (tmp_path / "modelrunner.yaml").write_text(f"name: ws\nbackends:\n{backends}", encoding="utf-8")
    return [str(problem) for problem in Workspace(tmp_path).problems()]


def test_a_slurm_backend_with_its_options_and_their_defaults() -> None:
    spec = WorkspaceSpec.model_validate(
        {"backends": {"hpc": {"type": "slurm", "partition": "short", "classes": {"gpu": {"partition": "gpu"}}}}}
    )

    backend = spec.backends["hpc"]
    assert isinstance(backend, SlurmBackendSpec)
    assert backend.partition == "short"
    assert backend.account is None
    assert backend.slots == 8
    assert backend.sbatch_args == []
    assert backend.python == "python3"
    assert backend.workdir is None
    assert backend.classes == {"gpu": SlurmClassSpec(partition="gpu")}


def test_check_names_a_misspelt_or_wrong_slurm_option(tmp_path: Path) -> None:
    found = problems_of(
        tmp_path,
        "  hpc:\n    type: slurm\n    partiton: short\n    slots: 0\n"
        "    sbatch_args: ['--job-name=mine', 'qos=low']\n"
        "    classes:\n      gpu: {partition: 'gpu a100', qos: high}\n",
    )

    assert found == [
        "modelrunner.yaml: backends.hpc.slots: Input should be greater than or equal to 1",
        "modelrunner.yaml: backends.hpc.sbatch_args: '--job-name=mine' is set by modelrunner itself for each attempt",
        "modelrunner.yaml: backends.hpc.classes.gpu.partition: 'gpu a100' is not a Slurm partition or account name",
        "modelrunner.yaml: backends.hpc.classes.gpu.qos: is not a known field",
        "modelrunner.yaml: backends.hpc.partiton: is not a known field",
    ]


@pytest.mark.parametrize(
    ("memory", "expected"),
    [("512Mi", "512M"), ("4Gi", "4096M"), ("1.5Gi", "1536M"), ("100Ki", "1M"), ("2G", "1908M"), ("1GiB", "1024M")],
)
def test_memory_becomes_whole_mebibytes(memory: str, expected: str) -> None:
    assert slurm_memory(memory) == expected


def test_memory_without_a_unit_is_refused() -> None:
    with pytest.raises(ModelrunnerError, match="not an amount like 512Mi"):
        slurm_memory("4096")


def test_time_limits_are_whole_minutes_of_at_least_one() -> None:
    assert [slurm_minutes(s) for s in (2, 60, 61, 3600)] == [1, 1, 2, 60]


def backend(tmp_path: Path, **options: object) -> SlurmBackend:
    services = RemoteServices(ArtifactStore(str(tmp_path / "artifacts")), LogStore(tmp_path / "logs"), 30, lambda: None)
    spec = SlurmBackendSpec.model_validate({"type": "slurm", **options})
    return SlurmBackend("hpc", spec, services, state_dir=tmp_path / "state")


def job(resources: Resources) -> AttemptJob:
    return AttemptJob(7, 42, 1, "m", "v1", ["python", "m.py"], {}, "file:///snapshot", resources=resources)


def test_sbatch_options_come_from_the_resources_and_the_class_wins_over_the_backend(tmp_path: Path) -> None:
    slurm = backend(
        tmp_path,
        partition="short",
        account="lab",
        sbatch_args=["--qos=normal"],
        classes={"big": {"partition": "long", "sbatch_args": ["--exclusive"]}},
    )
    resources = Resources.model_validate({"class": "big", "cpu": 2.5, "memory": "8Gi", "gpus": 1, "timeout": 3600})

    options = slurm.sbatch_options(job(resources))

    assert "--job-name=modelrunner-42" in options
    assert "--no-requeue" in options
    assert "--cpus-per-task=3" in options
    assert "--mem=8192M" in options
    assert "--time=61" in options  # the timeout and the grace period, rounded up
    assert "--gres=gpu:1" in options
    assert "--partition=long" in options and "--partition=short" not in options
    assert "--account=lab" in options
    assert options[-2:] == ["--qos=normal", "--exclusive"]


def test_without_resources_slurm_chooses_partition_memory_and_time(tmp_path: Path) -> None:
    options = backend(tmp_path).sbatch_options(job(Resources()))

    assert "--cpus-per-task=1" in options
    assert not [o for o in options if o.startswith(("--mem", "--time", "--gres", "--partition", "--account"))]


def test_check_names_a_backend_class_that_resource_classes_does_not_declare(tmp_path: Path) -> None:
    (tmp_path / "modelrunner.yaml").write_text(
        "name: ws\n"
        "resource_classes: {gpu: {gpus: 1}}\n"
        "backends:\n"
        "  hpc: {type: slurm, classes: {gpu: {partition: gpu}, gpuu: {partition: gpu}}}\n"
        "  batch: {type: aws-batch, job_queue: q, job_definition: d,\n"
        "          classes: {large: {job_queue: big, job_definition: d}}}\n",
        encoding="utf-8",
    )

    problems = [str(problem) for problem in Workspace(tmp_path).problems()]

    assert problems == [
        "modelrunner.yaml: backends.hpc.classes.gpuu: unknown resource class 'gpuu' (resource_classes: gpu)",
        "modelrunner.yaml: backends.batch.classes.large: unknown resource class 'large' (resource_classes: gpu)",
    ]
