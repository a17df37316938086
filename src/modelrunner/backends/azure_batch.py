"""The ``azure-batch`` backend: each attempt is one task of an Azure Batch job.

How the engine's words map to Batch (the azure-batch SDK, 15.x):

- submit: make sure the job of the run's resource class exists on its pool (created once per
  job per process; one that exists already is used), then add a task named after the attempt
  that runs ``python -m modelrunner exec`` through ``/bin/sh -c`` with ``MODELRUNNER_JOB`` in
  its environment (in ``image`` on a container-enabled pool), with maxTaskRetryCount 0
  (retries are the engine's, never Batch's behind its back) and maxWallClockTime the model's
  timeout plus the grace period: the engine times out first, Batch's limit only stops a task
  (and its bill) when no server is left to do so;
- started: the task is running (or completed having run);
- ended: the task completed. The outcome ``modelrunner exec`` left in the artifact store says
  how, when the model ended by itself. Otherwise: stopped by modelrunner -> cancelled or timed
  out; completed at its maxWallClockTime -> timed out; Batch requeued the task (its
  low-priority/Spot node was preempted, or a node or job was taken away while it ran) ->
  preempted, and the task is terminated at once so that Batch does not run it again beside the
  engine's retry; a task that exited non-zero without an outcome (failureInfo category
  UserError) -> failed, with a hint (modelrunner missing where the task runs, or the artifact
  store out of reach); a task Batch could not start (a UserError without an exit code, such as
  an image it cannot pull) -> failed; a task ended by someone else, a server error, or a task
  (or job) that is gone -> lost, retried on ``retries.lost``, with Batch's words in the error;
- cancel: TerminateTask (Batch ends the task's process); a handle without the task's job (a
  server that died before it stored one) tries every job of the backend.

Batch keeps no reason with a terminated task: its failureInfo says TaskEnded ("Task was ended by
user request") whoever ended it. A stop modelrunner asks for is remembered by the process that
asked (Attempts.stopping) until it reads the task's end. A restarted server never reads the
tasks of the one before: the engine finds that server's attempts by their expired lease,
terminates their tasks from the stored handle and records how they ended itself (a cancelled run
stays cancelled in the store; the others are lost and retried). So a TaskEnded that this
process did not ask for was someone else's doing: lost.

Credentials (a shared key read from the environment, or Microsoft Entra ID) stay in the client:
never in a handle, a log line or an error.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import math
import os
import re
import shlex
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from azure.batch import BatchClient
from azure.batch import models as batch
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity import DefaultAzureCredential

from modelrunner.artifacts.store import ArtifactStore
from modelrunner.auth.secrets import named_secret
from modelrunner.backends.base import BackendUnavailable, Handle, RemoteServices, Report
from modelrunner.backends.exec_attempts import (
    EXEC_COMMAND,
    Attempts,
    attempt_name,
    exec_environment,
    stop_reason,
)
from modelrunner.engine.states import AttemptStatus
from modelrunner.errors import ModelrunnerError
from modelrunner.execution.job import AttemptJob, Outcome
from modelrunner.spec.azure_batch_spec import AzureBatchBackendSpec, AzureBatchTarget

log = logging.getLogger("modelrunner.backends.azure_batch")

_LIST_CHUNK = 40  # task ids per List Tasks filter: the filter travels in the URL
_SELECT = ["id", "state", "previousState", "executionInfo"]
# Calls give up within seconds: the dispatcher's loop and `health` must not hang on an
# unreachable endpoint.
_CLIENT_OPTIONS: dict[str, Any] = {
    "connection_timeout": 5,
    "read_timeout": 20,
    "retry_total": 2,
    "retry_backoff_factor": 0.5,
    "retry_backoff_max": 4,
}
_HEALTH_CALL: dict[str, Any] = {"connection_timeout": 3, "read_timeout": 3, "retry_total": 0}
_UNSTARTED = ("active", "preparing")
# A failureInfo code Microsoft documents for a task terminated on request ("Task was ended by
# user request"): a TerminateTask, whoever sent it.
_ENDED_ON_REQUEST = "TaskEnded"
_SOCKET_OBJECT = re.compile(r"<[^<>]* object at 0x[0-9a-fA-F]+>:\s*")


def command_line(python: str | None) -> str:
    """The task's command line: ``modelrunner exec`` run by ``python`` (``python`` on the PATH by
    default). Batch runs a command line without a shell; ``/bin/sh -c`` finds the interpreter on
    the PATH, and ``exec`` leaves no shell between Batch and the process it ends."""
    words = [python or EXEC_COMMAND[0], *EXEC_COMMAND[1:]]
    return f"/bin/sh -c {shlex.quote('exec ' + shlex.join(words))}"


def wall_clock_seconds(job: AttemptJob, grace_seconds: float) -> int | None:
    """Batch's maxWallClockTime for the job: its timeout plus the grace period, in whole seconds
    (None: no timeout, no limit)."""
    timeout = job.resources.timeout
    return math.ceil(timeout + grace_seconds) if timeout is not None else None


def new_task(
    job: AttemptJob,
    config: AzureBatchBackendSpec,
    target: AzureBatchTarget,
    artifacts: ArtifactStore,
    grace_seconds: float,
) -> batch.BatchTaskCreateOptions:
    """The task that runs ``job``, as AddTask sends it."""
    environment = exec_environment(job, artifacts, grace_seconds)
    limit = wall_clock_seconds(job, grace_seconds)
    constraints = batch.BatchTaskConstraints(
        max_wall_clock_time=dt.timedelta(seconds=limit) if limit is not None else None,
        max_task_retry_count=0,
    )
    return batch.BatchTaskCreateOptions(
        id=attempt_name(job.attempt_id),
        display_name=f"{job.model_name} run {job.run_id} attempt {job.attempt_number}",
        command_line=command_line(config.python),
        environment_settings=[batch.EnvironmentSetting(name=name, value=value) for name, value in environment.items()],
        constraints=constraints,
        required_slots=job.resources.slots if config.cpu_slots else None,
        container_settings=batch.BatchTaskContainerSettings(image_name=target.image) if target.image else None,
    )


def task_handle(job: AttemptJob, target: AzureBatchTarget, grace_seconds: float) -> Handle:
    """The handle of ``job``'s task: where it is, and what its end is read against."""
    return {
        "backend": AzureBatchBackend.type,
        "job_id": target.job_id,
        "task_id": attempt_name(job.attempt_id),
        "pool_id": target.pool_id,
        "image": target.image,
        "max_wall_clock_seconds": wall_clock_seconds(job, grace_seconds),
        "attempt_id": job.attempt_id,
        "run_id": job.run_id,
        "attempt": job.attempt_number,
    }


@dataclass(frozen=True)
class Observation:
    """What one look at an attempt's task says: whether it runs (since when), how it ended, and
    whether it must be terminated before that ending is reported."""

    handle: Handle  # with the start time Batch gave, once the task ran
    running: bool
    started_at: dt.datetime | None
    ending: Outcome | None
    terminate: bool = False  # Batch requeued it: it would run again behind the engine's back


def observe(handle: Handle, task: batch.BatchTask | None, attempts: Attempts) -> Observation:
    """How the attempt of ``handle`` stands, from its ``task`` as List Tasks returned it (None:
    Batch no longer knows it) and what the attempt left in the artifact store (``attempts``)."""
    words: dict[str, Any] = {"what": "Batch task"}
    if not handle.get("image"):
        words |= {"process": "the task", "runs_in": "the interpreter on the pool's nodes"}
    if task is None:
        gone = "Azure Batch no longer knows the task (it or its job was deleted)"
        return Observation(handle, False, None, attempts.ending(handle, gone, None, interrupted=None, **words))
    state = _word(task.state)
    info = task.execution_info
    started = info.start_time if info is not None else None
    if _requeued(handle, task):
        interrupted = (
            "Azure Batch requeued the task to run it again (its low-priority or Spot node was preempted, "
            "or a node or job was taken away while it ran)"
        )
        ending = attempts.ending(handle, None, None, interrupted=interrupted, **words)
        return Observation(handle, False, None, ending, terminate=state != "completed")
    if started is not None and "started_at" not in handle:
        handle = {**handle, "started_at": started.isoformat()}
    if state != "completed":
        return Observation(handle, state == "running", started, None)
    failure = info.failure_info if info is not None else None
    exit_code = info.exit_code if info is not None else None
    reason = _described(failure, exit_code)
    ended_on_request = failure is not None and failure.code == _ENDED_ON_REQUEST
    user_error = failure is not None and _word(failure.category) == "usererror" and not ended_on_request
    refused = f"Azure Batch could not start the task: {reason}" if user_error and exit_code is None else None
    if _at_wall_clock(handle, info):
        reason = stop_reason(AttemptStatus.TIMED_OUT)  # Batch stopped it at the limit modelrunner set
    ending = attempts.ending(
        handle,
        reason,
        exit_code if failure is None or user_error else None,
        interrupted=None,
        refused=refused,
        **words,
    )
    return Observation(handle, False, started, ending)


def _requeued(handle: Handle, task: batch.BatchTask) -> bool:
    """Whether Batch put the task back in its queue after it ran. Microsoft documents that the
    tasks running on a preempted low-priority/Spot node "will be rescheduled when another
    Compute Node becomes available", that a task is requeued after "node removal, job disable
    operations that requeue tasks, or other service-driven recovery scenarios", and that
    executionInfo.startTime is "the most recent time at which the Task started running". So: a
    requeueCount above 0, a task waiting again (active or preparing) that ran before, or one
    that started again since the start the engine was told of."""
    info = task.execution_info
    if info is not None and (info.requeue_count or 0) > 0:
        return True
    seen = handle.get("started_at")
    if _word(task.state) in _UNSTARTED:
        return bool(seen) or _word(task.previous_state) == "running"
    started = info.start_time if info is not None else None
    return bool(seen) and started is not None and started != dt.datetime.fromisoformat(str(seen))


def _at_wall_clock(handle: Handle, info: batch.BatchTaskExecutionInfo | None) -> bool:
    """Whether the task failed having run for its maxWallClockTime ("If the Task does not
    complete within the time limit, the Batch service terminates it")."""
    limit = handle.get("max_wall_clock_seconds")
    if limit is None or info is None or info.failure_info is None or info.start_time is None or info.end_time is None:
        return False
    return (info.end_time - info.start_time).total_seconds() >= float(limit)


def _described(failure: batch.BatchTaskFailureInfo | None, exit_code: int | None) -> str:
    """Batch's words for how a task ended."""
    if failure is None:
        return f"exit code {exit_code}"
    words = f"{failure.code or _word(failure.category)}: {failure.message or 'no message'}"
    details = "; ".join(f"{d.name}: {d.value}" for d in failure.details or [] if d.value)
    words = f"{words} ({details})" if details else words
    return f"{words}, exit code {exit_code}" if exit_code is not None else words


def _word(value: Any) -> str:
    """An enum member of the SDK (or the string it left unknown) as Batch's lowercase word."""
    return str(getattr(value, "value", value) or "").lower()


def problem(exc: Exception) -> str:
    """What an Azure error says, for a person (never credentials: azure-core's messages hold none)."""
    if isinstance(exc, ModelrunnerError):
        return exc.message
    if isinstance(exc, HttpResponseError) and exc.error is not None:
        return f"{exc.error.code or exc.status_code}: {exc.error.message or exc.reason}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return _SOCKET_OBJECT.sub("", text)


def _unreachable(exc: Exception) -> bool:
    """Whether Azure Batch could not be reached, or was too busy to answer: then the run waits
    in the queue instead of failing."""
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return True
    return isinstance(exc, HttpResponseError) and (exc.status_code or 0) in (429, 500, 502, 503, 504)


class AzureBatchBackend:
    """Runs attempts as Azure Batch tasks of ``config``; see the module's docstring."""

    type: ClassVar[str] = "azure-batch"

    def __init__(self, name: str, config: AzureBatchBackendSpec, services: RemoteServices) -> None:
        """``artifacts`` must be reachable from the pool's nodes under the same URL."""
        self.name = name
        self._config = config
        self._artifacts = services.artifacts
        self._grace = services.grace_seconds
        self._wake = services.wake
        self._attempts = Attempts(services.artifacts, services.logs)
        self._lock = threading.Lock()
        self._batch: BatchClient | None = None
        self._identity: DefaultAzureCredential | None = None
        self._jobs: set[str] = set()  # made sure of by this process

    # --- the backend contract -------------------------------------------------------------------

    def free_slots(self) -> int:
        return self._config.slots - self._attempts.count()

    def health(self) -> str | None:
        url = self._config.account_url
        try:
            client = self._client()
        except ModelrunnerError as exc:
            return exc.message
        for pool_id in dict.fromkeys(target.pool_id for target in self._config.targets(self.name)):
            try:
                pool = client.get_pool(pool_id, select=["id", "state"], **_HEALTH_CALL)
            except ResourceNotFoundError:
                return f"the pool {pool_id} does not exist in the Azure Batch account {url}"
            except ClientAuthenticationError as exc:
                return f"cannot sign in to Azure Batch at {url}: {problem(exc)}"
            except HttpResponseError as exc:
                return f"Azure Batch at {url} refused: {problem(exc)}"
            except AzureError as exc:
                return f"cannot reach Azure Batch at {url}: {problem(exc)}"
            if _word(pool.state) != "active":
                return f"the pool {pool_id} of the Azure Batch account {url} is {_word(pool.state)}"
        return None

    def submit(self, job: AttemptJob) -> Handle:
        target = self._config.target(self.name, job.resources.resource_class)
        task = new_task(job, self._config, target, self._artifacts, self._grace)
        try:
            client = self._client()
            self._ensure_job(client, target)
            client.create_task(target.job_id, task)
        except ResourceNotFoundError as exc:  # the job was deleted since: the next submit makes it again
            self._jobs.discard(target.job_id)
            raise ModelrunnerError(f"Azure Batch did not take the task: {problem(exc)}") from exc
        except AzureError as exc:
            message = f"Azure Batch at {self._config.account_url} did not take the task: {problem(exc)}"
            if _unreachable(exc):
                raise BackendUnavailable(message) from exc
            raise ModelrunnerError(message) from exc
        self._attempts.add(job.attempt_id)
        self._wake()
        return task_handle(job, target, self._grace)

    def poll(self, handles: Sequence[Handle]) -> list[Report]:
        reports: list[Report] = []
        by_job: dict[str, list[Handle]] = {}
        for handle in handles:
            if handle.get("job_id") and handle.get("task_id"):
                by_job.setdefault(str(handle["job_id"]), []).append(handle)
        for job_id, launched in by_job.items():
            for start in range(0, len(launched), _LIST_CHUNK):
                chunk = launched[start : start + _LIST_CHUNK]
                try:
                    tasks = self._tasks(job_id, [str(h["task_id"]) for h in chunk])
                except (AzureError, ModelrunnerError) as exc:  # asked again at the next poll
                    log.warning(
                        "backend %s: cannot list the tasks of Batch job %s: %s", self.name, job_id, problem(exc)
                    )
                    continue
                for handle in chunk:
                    reports.extend(self._reports_of(job_id, handle, tasks.get(str(handle["task_id"]).lower())))
        return reports

    def cancel(self, handle: Handle, reason: AttemptStatus) -> None:
        attempt_id = int(handle["attempt_id"])
        self._attempts.stopping(attempt_id, reason)
        task_id = str(handle.get("task_id") or attempt_name(attempt_id))
        if handle.get("job_id"):
            jobs = [str(handle["job_id"])]
        else:
            jobs = [target.job_id for target in self._config.targets(self.name)]
        for job_id in jobs:
            self._terminate(job_id, task_id, attempt_id)
        self._wake()

    def close(self) -> None:
        """Close the connections to Azure. Attempts still running are not stopped here: the
        dispatcher stops them (cancel) as the server shuts down."""
        with self._lock:
            if self._batch is not None:
                self._batch.close()
            if self._identity is not None:
                self._identity.close()
            self._batch = self._identity = None

    # --- helpers --------------------------------------------------------------------------------

    def _client(self) -> BatchClient:
        """The Batch client, made at first use; ModelrunnerError when the key it needs is missing."""
        with self._lock:
            if self._batch is None:
                self._batch = BatchClient(self._config.account_url, self._credential(), **_CLIENT_OPTIONS)
            return self._batch

    def _credential(self) -> Any:
        variable, account = self._config.account_key_env, self._config.account_name
        if variable is None or account is None:
            self._identity = DefaultAzureCredential()
            return self._identity
        key = (named_secret(variable, os.environ) or "").strip()
        if not key:
            raise ModelrunnerError(
                f"the environment variable {variable}, which should hold the key of the Azure Batch account "
                f"{account}, is not set on the server (nor {variable}_FILE, naming a file that holds it)"
            )
        try:
            base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            # Said without the value, and without the decoder's words about it.
            raise ModelrunnerError(
                f"the environment variable {variable} does not hold an Azure Batch account key (base64)"
            ) from None
        return AzureNamedKeyCredential(account, key)

    def _ensure_job(self, client: BatchClient, target: AzureBatchTarget) -> None:
        """Create the target's job on its pool, once per process; one that exists is used if it
        is on that pool and takes tasks."""
        if target.job_id in self._jobs:
            return
        job = batch.BatchJobCreateOptions(
            id=target.job_id,
            display_name=f"modelrunner backend {self.name}",
            pool_info=batch.BatchPoolInfo(pool_id=target.pool_id),
            constraints=batch.BatchJobConstraints(max_task_retry_count=0),
        )
        try:
            client.create_job(job)
        except ResourceExistsError:
            found = client.get_job(target.job_id, select=["id", "state", "poolInfo"])
            pool = found.pool_info.pool_id if found.pool_info is not None else None
            if pool != target.pool_id:
                raise ModelrunnerError(
                    f"the Azure Batch job {target.job_id} exists on pool {pool}, not {target.pool_id}: "
                    "give the backend (or class) another job_id"
                ) from None
            if _word(found.state) in ("terminating", "completed", "deleting"):
                raise ModelrunnerError(
                    f"the Azure Batch job {target.job_id} is {_word(found.state)} and takes no more tasks: "
                    "delete it (modelrunner makes it again) or give the backend another job_id"
                ) from None
        self._jobs.add(target.job_id)

    def _tasks(self, job_id: str, task_ids: list[str]) -> dict[str, batch.BatchTask]:
        """These tasks of the job as List Tasks returns them, by lowercase id (Batch's ids are
        case-insensitive); none when the job is gone."""
        wanted = " or ".join(f"id eq '{task_id}'" for task_id in task_ids)
        try:
            return {task.id.lower(): task for task in self._client().list_tasks(job_id, filter=wanted, select=_SELECT)}
        except ResourceNotFoundError:
            return {}

    def _reports_of(self, job_id: str, handle: Handle, task: batch.BatchTask | None) -> list[Report]:
        seen = observe(handle, task, self._attempts)
        if seen.terminate and not self._terminate(job_id, str(handle["task_id"]), int(handle["attempt_id"])):
            return []  # not reported until Batch will not run it again: asked again at the next poll
        return self._attempts.reports(seen.handle, running=seen.running, at=seen.started_at, ending=seen.ending)

    def _terminate(self, job_id: str, task_id: str, attempt_id: int) -> bool:
        """TerminateTask; True when the task has ended (also before, or when it is gone)."""
        try:
            self._client().terminate_task(job_id, task_id)
        except ResourceNotFoundError:
            return True  # never made, or deleted with its job
        except ResourceExistsError:
            return True  # 409 TaskCompleted: it ended already
        except (AzureError, ModelrunnerError) as exc:  # the engine retries a cancel it still wants
            log.warning("attempt %s: Azure Batch did not terminate its task: %s", attempt_id, problem(exc))
            return False
        return True
