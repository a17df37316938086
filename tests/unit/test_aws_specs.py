"""``type: aws-ecs`` and ``type: aws-batch`` in modelrunner.yaml, and what the AWS backends make
of a model's resources and of AWS's reasons for stopping a task or job."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelrunner.engine.states import AttemptStatus
from modelrunner.spec.backend_spec import AwsBatchBackendSpec, AwsBatchTarget, AwsEcsBackendSpec
from modelrunner.spec.model_spec import Resources
from modelrunner.spec.workspace import Workspace, WorkspaceSpec


def problems_of(tmp_path: Path, backends: str) -> list[str]:
    (tmp_path / "modelrunner.yaml").write_text(f"name: ws\nbackends:\n{backends}", encoding="utf-8")
    return [str(problem) for problem in Workspace(tmp_path).problems()]


def test_an_ecs_backend_with_its_options_and_their_defaults() -> None:
    spec = WorkspaceSpec.model_validate(
        {
            "backends": {
                "spot": {
                    "type": "aws-ecs",
                    "cluster": "models",
                    "task_definition": "modelrunner:3",
                    "container": "runner",
                    "subnets": ["subnet-1"],
                    "capacity": "FARGATE_SPOT",
                }
            }
        }
    )

    backend = spec.backends["spot"]
    assert isinstance(backend, AwsEcsBackendSpec)
    assert backend.capacity == "FARGATE_SPOT"
    assert backend.on_demand_last_attempt is True
    assert backend.security_groups == []
    assert backend.assign_public_ip is False
    assert (backend.region, backend.endpoint_url, backend.slots) == (None, None, 10)


def test_check_names_what_is_wrong_with_an_ecs_backend(tmp_path: Path) -> None:
    found = problems_of(
        tmp_path,
        "  spot:\n    type: aws-ecs\n    cluster: models\n    task_definition: mr\n    container: runner\n"
        "    subnets: []\n    capacity: SPOT\n",
    )

    assert len(found) == 2, found
    assert any("backends.spot.subnets" in problem for problem in found)
    assert any("backends.spot.capacity" in problem for problem in found)


def test_a_batch_backend_chooses_queue_and_definition_by_resource_class() -> None:
    spec = WorkspaceSpec.model_validate(
        {
            "backends": {
                "batch": {
                    "type": "aws-batch",
                    "job_queue": "default-queue",
                    "job_definition": "modelrunner",
                    "classes": {"large": {"job_queue": "big-queue", "job_definition": "modelrunner-large:2"}},
                }
            }
        }
    )

    backend = spec.backends["batch"]
    assert isinstance(backend, AwsBatchBackendSpec)
    assert backend.target("large") == AwsBatchTarget(job_queue="big-queue", job_definition="modelrunner-large:2")
    assert backend.target(None) == AwsBatchTarget(job_queue="default-queue", job_definition="modelrunner")
    assert backend.target("small") == backend.target(None)  # a class without a pair of its own


def test_check_names_a_misspelt_batch_class_option(tmp_path: Path) -> None:
    found = problems_of(
        tmp_path,
        "  batch:\n    type: aws-batch\n    job_queue: q\n    job_definition: d\n"
        "    classes:\n      large: {queue: big, job_definition: d2}\n",
    )

    assert any("backends.batch.classes.large.job_queue" in problem for problem in found), found
    assert any("backends.batch.classes.large.queue" in problem for problem in found), found


def test_a_models_resources_in_batch_terms() -> None:
    pytest.importorskip("boto3")
    from modelrunner.backends.aws_batch import mebibytes, resource_requirements

    assert mebibytes("512Mi") == 512
    assert mebibytes("8Gi") == 8192
    assert mebibytes("1G") == 954
    assert resource_requirements(Resources(cpu=2, memory="4Gi", gpus=1)) == [
        {"type": "VCPU", "value": "2"},
        {"type": "MEMORY", "value": "4096"},
        {"type": "GPU", "value": "1"},
    ]
    assert resource_requirements(Resources()) == []


def test_what_aws_says_about_a_stop() -> None:
    pytest.importorskip("boto3")
    from modelrunner.backends.aws_batch import is_host_reclaimed
    from modelrunner.backends.aws_ecs import is_spot_interruption
    from modelrunner.backends.exec_attempts import asked_stop, stop_reason

    assert asked_stop(stop_reason(AttemptStatus.TIMED_OUT)) == AttemptStatus.TIMED_OUT
    assert asked_stop("Essential container in task exited") is None
    assert is_spot_interruption({"stopCode": "SpotInterruption", "stoppedReason": "Your Spot Task was interrupted."})
    assert is_spot_interruption({"stoppedReason": "Your Spot Task was interrupted."})
    assert not is_spot_interruption({"stopCode": "UserInitiated", "stoppedReason": "Task stopped by user"})
    assert is_host_reclaimed("Host EC2 (instance i-0123456789abcdef0) terminated.")
    assert not is_host_reclaimed("Essential container in task exited")
