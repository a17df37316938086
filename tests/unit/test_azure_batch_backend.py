"""The ``azure-batch`` backend without Azure: ``type: azure-batch`` in modelrunner.yaml, the task
it asks Batch to run (as the SDK sends it), and what it makes of a task as Batch's REST API
returns it (JSON shaped per the Batch REST reference, read by the SDK's own model classes).

No emulator of Azure Batch exists, and nothing here reaches Azure: what is tested is what the
backend sends and how it reads what comes back. tests/integration/test_azure_batch_backend.py
runs it against an endpoint that does not answer."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from azure.batch import models as batch

from modelrunner.artifacts.logs import LogStore
from modelrunner.artifacts.store import ArtifactStore
from modelrunner.backends.azure_batch import Observation, command_line, new_task, observe, task_handle
from modelrunner.backends.base import Started
from modelrunner.backends.exec_attempts import Attempts
from modelrunner.engine.states import AttemptStatus
from modelrunner.execution.job import AttemptJob, Outcome
from modelrunner.execution.remote import outcome_key, outcome_to_dict, parse_job
from modelrunner.spec.azure_batch_spec import AzureBatchBackendSpec, AzureBatchTarget, batch_id
from modelrunner.spec.model_spec import Resources
from modelrunner.spec.workspace import Workspace, WorkspaceSpec

# What a shared key looks like (base64 of 64 random bytes); not a key of any account.
KEY = "kZ3+8/tQ5mVtH3nN0W8r7yqN1i9l2F4cQ0o6dXxG5eJzYh1mB4vR9sK2pL7aC3uE0wT6nD8fH1jQ5gM9bV2xZA=="
URL = "https://models.westeurope.batch.azure.com"


def spec(**options: Any) -> AzureBatchBackendSpec:
    backend = WorkspaceSpec.model_validate(
        {"backends": {"batch": {"type": "azure-batch", "account_url": URL, "pool_id": "lowpri"} | options}}
    ).backends["batch"]
    assert isinstance(backend, AzureBatchBackendSpec)
    return backend


def problems_of(tmp_path: Path, backend: str) -> list[str]:
    (tmp_path / "modelrunner.yaml").write_text(
        f"name: ws\nbackends:\n  batch:\n    type: azure-batch\n{backend}", encoding="utf-8"
    )
    return [str(problem) for problem in Workspace(tmp_path).problems()]


# --- modelrunner.yaml ---------------------------------------------------------------------------


def test_an_azure_batch_backend_with_its_defaults() -> None:
    backend = spec(account_name="models", account_key_env="AZURE_BATCH_KEY")

    assert backend.account_url == URL
    assert (backend.slots, backend.image, backend.python, backend.cpu_slots, backend.job_id) == (
        10,
        None,
        None,
        False,
        None,
    )
    assert backend.target("spot", None) == AzureBatchTarget(job_id="modelrunner-spot", pool_id="lowpri", image=None)
    assert spec().account_key_env is None  # Microsoft Entra ID


def test_a_class_on_another_pool_gets_a_job_of_its_own() -> None:
    backend = spec(
        image="example.azurecr.io/models:1",
        classes={
            "gpu": {"pool_id": "gpu-pool", "image": "example.azurecr.io/models-cuda:1"},
            "large": {"pool_id": "lowpri"},  # the backend's pool: its job
            "big": {"pool_id": "big-pool", "job_id": "big-models"},
        },
    )

    assert backend.target("spot", "gpu") == AzureBatchTarget(
        job_id="modelrunner-spot-gpu", pool_id="gpu-pool", image="example.azurecr.io/models-cuda:1"
    )
    assert backend.target("spot", "large") == backend.target("spot", None)
    assert backend.target("spot", "big").job_id == "big-models"
    assert backend.target("spot", "small") == backend.target("spot", None)  # a class without a pool of its own
    assert [t.job_id for t in backend.targets("spot")] == ["modelrunner-spot", "modelrunner-spot-gpu", "big-models"]
    assert len(batch_id("modelrunner-" + "x" * 63)) == 64  # Batch's ids hold at most 64 characters


def test_check_names_a_wrong_option(tmp_path: Path) -> None:
    found = problems_of(
        tmp_path,
        f"    account_url: {URL}/jobs\n    pool_id: low pri\n    slotz: 3\n"
        "    classes:\n      gpu: {pool: gpu-pool}\n",
    )

    assert any(p.startswith("modelrunner.yaml: backends.batch.account_url:") for p in found), found
    assert any("backends.batch.pool_id: 'low pri' is not an Azure Batch id" in p for p in found), found
    assert any("backends.batch.slotz: is not a known field" in p for p in found), found
    assert any("backends.batch.classes.gpu.pool_id: is required" in p for p in found), found
    assert any("backends.batch.classes.gpu.pool: is not a known field" in p for p in found), found


def test_a_key_written_into_modelrunner_yaml_is_refused_without_repeating_it(tmp_path: Path) -> None:
    inline = problems_of(
        tmp_path,
        f"    account_url: {URL}\n    pool_id: lowpri\n    account_name: models\n    account_key_env: '{KEY}'\n",
    )
    as_field = problems_of(
        tmp_path, f"    account_url: {URL}\n    pool_id: lowpri\n    account_name: models\n    account_key: '{KEY}'\n"
    )

    assert inline == [
        "modelrunner.yaml: backends.batch.account_key_env: must be the NAME of an environment variable holding "
        "the account key (e.g. AZURE_BATCH_KEY), not the key itself: never write the key in modelrunner.yaml"
    ]
    assert len(as_field) == 1 and "name that variable in `account_key_env`" in as_field[0], as_field
    for problem in inline + as_field:
        assert KEY not in problem and KEY[:20] not in problem


def test_credentials_come_as_a_pair_and_a_job_has_one_pool(tmp_path: Path) -> None:
    found = problems_of(
        tmp_path,
        f"    account_url: {URL}\n    pool_id: lowpri\n    account_key_env: AZURE_BATCH_KEY\n"
        "    classes:\n      a: {pool_id: p1, job_id: shared}\n      b: {pool_id: p2, job_id: shared}\n",
    )
    assert found == [
        "modelrunner.yaml: backends.batch: give account_name and account_key_env together "
        "(or neither, for Microsoft Entra ID)"
    ]
    found = problems_of(
        tmp_path,
        f"    account_url: {URL}\n    pool_id: lowpri\n"
        "    classes:\n      a: {pool_id: p1, job_id: shared}\n      b: {pool_id: p2, job_id: shared}\n",
    )
    assert found == ["modelrunner.yaml: backends.batch: classes.b: job shared is on pool p1 (a job has one pool)"]
    found = problems_of(tmp_path, "    account_url: https://user:secret@models.batch.azure.com\n    pool_id: p\n")
    assert len(found) == 1 and "secret" not in found[0], found


# --- the task submit asks for -------------------------------------------------------------------


def attempt_job(**overrides: Any) -> AttemptJob:
    values: dict[str, Any] = {
        "run_id": 41,
        "attempt_id": 7,
        "attempt_number": 2,
        "model_name": "rt-estimate",
        "model_version": "v1",
        "command": ["python", "model.py", "--fast"],
        "params": {"region": "north", "draws": 200},
        "snapshot_uri": "s3://bucket/models/rt-estimate/v1.tar.gz",
        "resources": Resources(cpu=2, memory="4Gi", timeout=600, resource_class="large"),
        "callback_url": "https://modelrunner.example.org/api/v1/attempts/7",
        "callback_token": "mr_attempt_token",
    }
    return AttemptJob(**(values | overrides))


def wire(task: batch.BatchTaskCreateOptions) -> dict[str, Any]:
    """The task as the SDK puts it into the request body of AddTask."""
    sent: dict[str, Any] = json.loads(json.dumps(task.as_dict(exclude_readonly=True)))
    return sent


def test_the_task_runs_modelrunner_exec_with_the_job_and_batchs_limits(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "artifacts"))
    job = attempt_job()
    backend = spec()
    target = backend.target("spot", "large")

    sent = wire(new_task(job, backend, target, store, grace_seconds=5))

    assert set(sent) == {"id", "displayName", "commandLine", "environmentSettings", "constraints"}
    assert sent["id"] == "modelrunner-attempt-7"
    assert sent["displayName"] == "rt-estimate run 41 attempt 2"
    assert sent["commandLine"] == "/bin/sh -c 'exec python -m modelrunner exec'"
    assert shlex.split(sent["commandLine"]) == ["/bin/sh", "-c", "exec python -m modelrunner exec"]
    # The engine times out after 600 s; Batch ends the task after the grace period on top.
    assert sent["constraints"] == {"maxWallClockTime": "PT10M05S", "maxTaskRetryCount": 0}
    [setting] = sent["environmentSettings"]
    assert setting["name"] == "MODELRUNNER_JOB"
    remote = parse_job(setting["value"])
    assert remote.job == job
    assert (remote.artifacts_url, remote.grace_seconds) == (store.url, 5)


def test_the_task_in_an_image_with_cpu_slots_and_an_interpreter_of_the_nodes(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "artifacts"))
    backend = spec(image="example.azurecr.io/models:1", cpu_slots=True, python="/opt/model runner/bin/python")

    sent = wire(new_task(attempt_job(), backend, backend.target("spot", None), store, grace_seconds=5))
    untimed = wire(
        new_task(attempt_job(resources=Resources()), spec(), spec().target("spot", None), store, grace_seconds=5)
    )

    assert sent["containerSettings"] == {"imageName": "example.azurecr.io/models:1"}
    assert sent["requiredSlots"] == 2
    assert shlex.split(sent["commandLine"]) == [
        "/bin/sh",
        "-c",
        "exec '/opt/model runner/bin/python' -m modelrunner exec",
    ]
    assert command_line("python3") == "/bin/sh -c 'exec python3 -m modelrunner exec'"
    assert untimed["constraints"] == {"maxTaskRetryCount": 0}  # no timeout: no limit
    assert "requiredSlots" not in untimed and "containerSettings" not in untimed


# --- what the backend makes of a task as Batch returns it ---------------------------------------

STARTED = "2025-03-04T10:00:00.1234567Z"


def rest_task(state: str, previous: str | None = None, **execution: Any) -> batch.BatchTask:
    """A task as List Tasks returns it (REST API 2025-06-01, `$select=id,state,previousState,
    executionInfo`), read by the SDK's model class."""
    body: dict[str, Any] = {"id": "modelrunner-attempt-7", "state": state}
    if previous is not None:
        body["previousState"] = previous
    if state != "active" or execution:
        body["executionInfo"] = {"retryCount": 0, "requeueCount": 0} | execution
    return batch.BatchTask(body)


def failure(category: str, code: str, message: str, **details: str) -> dict[str, Any]:
    info: dict[str, Any] = {"category": category, "code": code, "message": message}
    if details:
        info["details"] = [{"name": name, "value": value} for name, value in details.items()]
    return info


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(str(tmp_path / "artifacts"))


@pytest.fixture
def attempts(store: ArtifactStore, tmp_path: Path) -> Attempts:
    return Attempts(store, LogStore(tmp_path / "logs"))


@pytest.fixture
def handle() -> dict[str, Any]:
    job = attempt_job(resources=Resources(timeout=60))
    return task_handle(job, AzureBatchTarget(job_id="modelrunner-spot", pool_id="lowpri", image=None), 5)


def left(store: ArtifactStore, outcome: Outcome) -> None:
    """What ``modelrunner exec`` leaves in the artifact store when the model ends by itself."""
    store.put_bytes(outcome_key(41, 2), json.dumps(outcome_to_dict(outcome)).encode())


def test_the_handle_says_where_the_task_is_and_holds_no_credentials(handle: dict[str, Any]) -> None:
    assert handle == {
        "backend": "azure-batch",
        "job_id": "modelrunner-spot",
        "task_id": "modelrunner-attempt-7",
        "pool_id": "lowpri",
        "image": None,
        "max_wall_clock_seconds": 65,
        "attempt_id": 7,
        "run_id": 41,
        "attempt": 2,
    }


def test_a_queued_task_is_neither_started_nor_ended(attempts: Attempts, handle: dict[str, Any]) -> None:
    seen = observe(handle, rest_task("active"), attempts)

    assert seen == Observation(handle, running=False, started_at=None, ending=None)
    assert observe(handle, rest_task("preparing", previous="active"), attempts).ending is None


def test_a_running_task_is_started_once_and_remembers_its_start(attempts: Attempts, handle: dict[str, Any]) -> None:
    seen = observe(handle, rest_task("running", previous="preparing", startTime=STARTED), attempts)

    assert seen.running and seen.ending is None and not seen.terminate
    assert seen.started_at is not None and seen.started_at.isoformat() == "2025-03-04T10:00:00.123456+00:00"
    assert seen.handle == handle | {"started_at": "2025-03-04T10:00:00.123456+00:00"}
    [report] = attempts.reports(seen.handle, running=True, at=seen.started_at, ending=None)
    assert isinstance(report, Started) and report.handle["started_at"] == seen.handle["started_at"]
    again = observe(seen.handle, rest_task("running", previous="preparing", startTime=STARTED), attempts)
    assert again.running and attempts.reports(again.handle, running=True, at=again.started_at, ending=None) == []


def test_what_the_model_left_in_the_store_comes_first(
    store: ArtifactStore, attempts: Attempts, handle: dict[str, Any]
) -> None:
    left(store, Outcome(AttemptStatus.FAILED, exit_code=3, error="the model exited with status 3"))
    exited = failure("usererror", "FailureExitCode", "The task exited with an exit code representing a failure")

    seen = observe(
        handle,
        rest_task("completed", "running", startTime=STARTED, exitCode=3, result="failure", failureInfo=exited),
        attempts,
    )

    assert seen.ending == Outcome(AttemptStatus.FAILED, exit_code=3, error="the model exited with status 3")
    left(store, Outcome(AttemptStatus.SUCCEEDED, exit_code=0))
    done = rest_task("completed", "running", startTime=STARTED, endTime="2025-03-04T10:00:30Z", exitCode=0)
    assert observe(handle, done, attempts).ending == Outcome(AttemptStatus.SUCCEEDED, exit_code=0)


def test_a_task_that_exited_before_modelrunner_exec_left_an_outcome_failed(
    attempts: Attempts, handle: dict[str, Any]
) -> None:
    # The failureInfo's code and message are illustrative: the mapping reads its category (a
    # user's error, not Batch's) and the exit code.
    exited = failure("usererror", "FailureExitCode", "The task exited with an exit code representing a failure")
    task = rest_task("completed", "running", startTime=STARTED, exitCode=1, result="failure", failureInfo=exited)

    on_nodes = observe(handle, task, attempts).ending
    in_image = observe(handle | {"image": "example.azurecr.io/models:1"}, task, attempts).ending

    assert on_nodes is not None and (on_nodes.status, on_nodes.exit_code) == (AttemptStatus.FAILED, 1)
    assert on_nodes.error == (
        "the task exited with status 1 before modelrunner exec left an outcome (does the interpreter on the "
        "pool's nodes have modelrunner installed, and reach the artifact store?): FailureExitCode: The task "
        "exited with an exit code representing a failure, exit code 1"
    )
    assert in_image is not None and "does the image have modelrunner installed" in str(in_image.error)


def test_a_task_batch_could_not_start_failed(attempts: Attempts, handle: dict[str, Any]) -> None:
    bad_image = failure("usererror", "ContainerInvalidImage", "One or more container images specified are invalid")

    ending = observe(handle, rest_task("completed", "active", result="failure", failureInfo=bad_image), attempts).ending

    assert ending == Outcome(
        AttemptStatus.FAILED,
        error="Azure Batch could not start the task: ContainerInvalidImage: One or more container images "
        "specified are invalid",
    )


def test_a_server_error_is_lost(attempts: Attempts, handle: dict[str, Any]) -> None:
    disk = failure("servererror", "DiskFull", "There is not enough disk space on the node")

    ending = observe(handle, rest_task("completed", "active", result="failure", failureInfo=disk), attempts).ending

    assert ending is not None and ending.status == AttemptStatus.LOST
    assert "DiskFull: There is not enough disk space on the node" in str(ending.error)


def test_a_task_ended_at_its_max_wall_clock_time_timed_out(attempts: Attempts, handle: dict[str, Any]) -> None:
    ended = failure(
        "usererror",
        "TaskEnded",
        "Task Was Ended by User Request",
        Message="The maximum execution time configured on the task was exceeded",
    )
    at_limit = rest_task(
        "completed",
        "running",
        startTime="2025-03-04T10:00:00Z",
        endTime="2025-03-04T10:01:05.0031Z",  # 65 s: the model's 60 s and the 5 s grace
        exitCode=137,
        result="failure",
        failureInfo=ended,
    )

    assert observe(handle, at_limit, attempts).ending == Outcome(AttemptStatus.TIMED_OUT, error="the run timed out")


def test_a_task_terminated_by_modelrunner_ended_as_it_asked(attempts: Attempts, handle: dict[str, Any]) -> None:
    ended = failure("usererror", "TaskEnded", "Task Was Ended by User Request")
    after_ten_seconds = rest_task(
        "completed",
        "running",
        startTime="2025-03-04T10:00:00Z",
        endTime="2025-03-04T10:00:10Z",
        exitCode=143,
        result="failure",
        failureInfo=ended,
    )
    never_ran = rest_task("completed", "active", result="failure", failureInfo=ended)

    attempts.stopping(7, AttemptStatus.CANCELLED)
    cancelled = observe(handle, after_ten_seconds, attempts)
    before_it_ran = observe(handle, never_ran, attempts)

    assert cancelled.ending == Outcome(AttemptStatus.CANCELLED, error="the run was cancelled")
    assert before_it_ran.ending == cancelled.ending
    assert (
        attempts.reports(before_it_ran.handle, running=False, at=None, ending=before_it_ran.ending)[0].attempt_id == 7
    )
    assert before_it_ran.started_at is None  # never reported started: it never ran


def test_a_task_terminated_by_someone_else_is_lost(attempts: Attempts, handle: dict[str, Any]) -> None:
    ended = failure("usererror", "TaskEnded", "Task Was Ended by User Request")
    task = rest_task(
        "completed",
        "running",
        startTime="2025-03-04T10:00:00Z",
        endTime="2025-03-04T10:00:10Z",
        exitCode=137,
        result="failure",
        failureInfo=ended,
    )

    ending = observe(handle, task, attempts).ending

    assert ending == Outcome(
        AttemptStatus.LOST,
        error="the Batch task ended without an outcome: TaskEnded: Task Was Ended by User Request, exit code 137",
    )


def test_a_task_batch_requeued_is_preempted_and_terminated(
    store: ArtifactStore, attempts: Attempts, handle: dict[str, Any]
) -> None:
    ran = handle | {"started_at": "2025-03-04T10:00:00.123456+00:00"}
    requeued = rest_task("active", "running", requeueCount=1, lastRequeueTime="2025-03-04T10:05:00Z", retryCount=0)
    back_in_queue = rest_task("active", "running")  # requeueCount is documented for a user's requeue only
    preparing_again = rest_task("preparing", "active")
    running_again = rest_task("running", "preparing", startTime="2025-03-04T10:07:00Z")
    ended_after = rest_task(
        "completed", "running", startTime="2025-03-04T10:07:00Z", exitCode=0, result="success", requeueCount=1
    )

    for task, known in ((requeued, handle), (back_in_queue, handle), (preparing_again, ran), (running_again, ran)):
        seen = observe(known, task, attempts)
        assert seen.ending is not None and seen.ending.status == AttemptStatus.PREEMPTED, task
        assert "Azure Batch requeued the task" in str(seen.ending.error)
        assert seen.terminate and not seen.running
    assert not observe(ran, ended_after, attempts).terminate  # completed: nothing left to stop
    left(store, Outcome(AttemptStatus.SUCCEEDED, exit_code=0))  # the model was done before its node went
    done = observe(ran, requeued, attempts)
    assert done.ending == Outcome(AttemptStatus.SUCCEEDED, exit_code=0) and done.terminate


def test_a_task_that_is_gone_is_lost(attempts: Attempts, handle: dict[str, Any]) -> None:
    ending = observe(handle, None, attempts).ending

    assert ending == Outcome(
        AttemptStatus.LOST,
        error="the Batch task ended without an outcome: Azure Batch no longer knows the task "
        "(it or its job was deleted)",
    )
