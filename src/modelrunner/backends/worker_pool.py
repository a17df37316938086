"""The ``worker`` backend: a pool of ``modelrunner worker`` processes, on any machine, that claim
attempts from this server over HTTP (api/workers_routes.py). The server itself is the queue.

How the engine's words map to the pool:

- submit: the job waits here until a worker of the pool claims it. The pool only has free slots
  while workers are asking for work, so a run is not taken from the queue before someone can
  run it;
- started: the worker's first heartbeat after the model's process started (with its pid);
- finished: the worker reports the outcome, after uploading the outputs through the server (a
  worker needs nothing but the server's URL and a token);
- leases: the attempt's stored lease, which the worker's claim and heartbeats renew through the
  API (``runner_lease_seconds`` says for how long); while a job waits here, the dispatcher
  renews it;
- lost: no heartbeat for ``lease_seconds``: the dispatcher finds the stored lease run out and
  cancels the attempt as lost; the worker's later calls are refused (its attempt's callback
  token is spent once the engine records the loss, and this pool no longer knows it);
- cancel: the next heartbeat answers "stop", and the worker has the grace period on top of its
  lease to stop the model and say so; a job not handed out yet is dropped.

Everything here is in memory: a restarted server has forgotten its handouts, the dispatcher's
recovery declares their attempts lost, and a worker still running one is told to stop (its token
is spent) at its next heartbeat.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections import deque
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import ClassVar

from modelrunner.artifacts.keys import clean_key
from modelrunner.backends.base import Finished, Handle, RemoteServices, Report, RunnerLeases, Started
from modelrunner.clock import utcnow
from modelrunner.data.cache import snapshot_prefix
from modelrunner.engine.states import AttemptStatus
from modelrunner.errors import Conflict, Forbidden
from modelrunner.execution import checkpoints
from modelrunner.execution.job import AttemptJob, Outcome, stop_message, stopped
from modelrunner.execution.remote import RemoteJob, log_key
from modelrunner.process_log import about_attempt
from modelrunner.spec.backend_spec import WorkerBackendSpec

log = logging.getLogger("modelrunner.backends.worker")

_CLAIM_WAIT_SECONDS = 20.0  # the longest a claim waits for work before answering "nothing"


@dataclass(frozen=True)
class Claim:
    """An attempt handed to a worker: the job description, and how often to send heartbeats."""

    attempt_id: int
    job_json: str
    heartbeat_seconds: float


@dataclass(frozen=True)
class Instruction:
    """A heartbeat's answer: keep going, or stop the model because of ``reason``."""

    stop: AttemptStatus | None
    message: str = ""


@dataclass
class _Handout:
    job: AttemptJob
    worker: str
    handle: Handle
    started: bool = False
    stop_reason: AttemptStatus | None = None


class WorkerPool(RunnerLeases):
    """The backend of one pool; see the module's docstring. Thread-safe: the dispatcher calls the
    backend contract while the HTTP routes call ``claim``, ``heartbeat``, ``finish`` and the
    file operations."""

    type: ClassVar[str] = "worker"

    def __init__(
        self,
        name: str,
        config: WorkerBackendSpec,
        services: RemoteServices,
    ) -> None:
        """``wake`` is called when there is something for the dispatcher to do (a worker asks for
        work, an attempt reports)."""
        self.name = name
        self._config = config
        self._artifacts = services.artifacts
        self._logs = services.logs
        self._grace = services.grace_seconds
        self._wake = services.wake
        self._changed = threading.Condition()
        self._waiting: deque[AttemptJob] = deque()  # submitted, not handed out yet
        self._handed: dict[int, _Handout] = {}
        self._claimers = 0  # workers waiting in claim() now
        self._last_seen: float | None = None  # monotonic, any worker's last call
        self._reports: list[Report] = []
        self._closed = False

    @property
    def lease_seconds(self) -> float:
        return self._config.lease_seconds

    # --- the backend contract -------------------------------------------------------------------

    def free_slots(self) -> int:
        with self._changed:
            room = self._config.slots - len(self._handed) - len(self._waiting)
            return max(0, min(room, self._claimers - len(self._waiting)))

    def health(self) -> str | None:
        with self._changed:
            seen = self._last_seen
        if seen is not None and time.monotonic() - seen <= max(self._config.lease_seconds, _CLAIM_WAIT_SECONDS) * 2:
            return None
        return f"no worker of pool '{self.name}' is connected: start `modelrunner worker --pool {self.name}`"

    def submit(self, job: AttemptJob) -> Handle:
        handle: Handle = {
            "backend": self.type,
            "pool": self.name,
            "attempt_id": job.attempt_id,
            "run_id": job.run_id,
            "attempt": job.attempt_number,
        }
        with self._changed:
            self._waiting.append(job)
            self._changed.notify_all()
        return handle

    def poll(self, handles: Sequence[Handle]) -> list[Report]:
        # Every attempt of the pool reports here; ``handles`` need no lookup.
        with self._changed:
            reports, self._reports = self._reports, []
        return reports

    def cancel(self, handle: Handle, reason: AttemptStatus) -> None:
        attempt_id = int(handle["attempt_id"])
        with self._changed:
            for job in list(self._waiting):
                if job.attempt_id == attempt_id:
                    self._waiting.remove(job)
                    self._reports.append(Finished(attempt_id, stopped(reason)))
                    break
            handout = self._handed.get(attempt_id)
            if handout is not None and reason == AttemptStatus.LOST:
                # Its stored lease ran out: the worker went silent. Forgotten here, the attempt's
                # later calls are refused.
                del self._handed[attempt_id]
                self._reports.append(Finished(attempt_id, self._silent_outcome(handout)))
            elif handout is not None and handout.stop_reason is None:
                handout.stop_reason = reason
        # Unknown here (a restarted server's orphan): the worker's next heartbeat is refused.
        self._wake()

    def runner_lease_seconds(self, attempt_id: int) -> float | None:
        with self._changed:
            handout = self._handed.get(attempt_id)
            if handout is None:
                return None
            # A worker told to stop has the grace period too, to stop the model and say so.
            return self._config.lease_seconds + (self._grace if handout.stop_reason is not None else 0.0)

    def close(self) -> None:
        """Answer the workers waiting for work; handouts end with the server (they are lost)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    # --- what workers ask -----------------------------------------------------------------------

    def claim(self, worker: str, wait_seconds: float = _CLAIM_WAIT_SECONDS) -> Claim | None:
        """The next job of the pool for ``worker``, waiting up to ``wait_seconds`` for one; None
        when there is none."""
        deadline = time.monotonic() + min(wait_seconds, _CLAIM_WAIT_SECONDS)
        with self._changed:
            self._claimers += 1
            self._last_seen = time.monotonic()
        self._wake()  # the dispatcher takes queued runs now that someone can run them
        try:
            with self._changed:
                while not self._waiting and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    self._changed.wait(left)
                if self._closed:
                    return None
                job = self._waiting.popleft()
                handle: Handle = {
                    "backend": self.type,
                    "pool": self.name,
                    "worker": worker,
                    "attempt_id": job.attempt_id,
                    "run_id": job.run_id,
                    "attempt": job.attempt_number,
                }
                self._handed[job.attempt_id] = _Handout(job, worker, handle)
                self._last_seen = time.monotonic()
        finally:
            with self._changed:
                self._claimers -= 1
        with _about(job, self.name):
            log.info("attempt %s of run %s handed to worker %s", job.attempt_id, job.run_id, worker)
        remote = RemoteJob(job, self._artifacts.url, self._grace)
        return Claim(job.attempt_id, remote.to_json(), heartbeat_seconds=self._config.lease_seconds / 3)

    def heartbeat(self, attempt_id: int, pid: int | None = None, host: str | None = None) -> Instruction:
        """The worker running the attempt lives; with ``pid`` once its model's process runs.
        Answers whether to go on."""
        with self._changed:
            handout = self._handed.get(attempt_id)
            if handout is None:
                return Instruction(AttemptStatus.LOST, f"this server no longer runs attempt {attempt_id}")
            self._last_seen = time.monotonic()
            if pid is not None and not handout.started:
                handout.started = True
                handout.handle = {**handout.handle, "pid": pid, "host": host}
                self._reports.append(Started(attempt_id, handout.handle, utcnow()))
                self._wake()
            if handout.stop_reason is not None:
                return Instruction(handout.stop_reason, stop_message(handout.stop_reason))
        return Instruction(None)

    def finish(self, attempt_id: int, outcome: Outcome) -> None:
        """The worker's outcome of the attempt (its outputs uploaded already). Conflict if this
        pool no longer runs the attempt (declared lost meanwhile): the result is dropped."""
        with self._changed:
            handout = self._handed.get(attempt_id)
            if handout is None:
                raise Conflict(
                    f"attempt {attempt_id} is no longer running here (declared lost, or the server restarted); "
                    "its result is dropped",
                    attempt=attempt_id,
                )
            self._check_outputs(handout, outcome)
            del self._handed[attempt_id]
            if handout.stop_reason is not None and outcome.status != AttemptStatus.SUCCEEDED:
                outcome = replace(
                    stopped(handout.stop_reason, outcome.exit_code), partial_outputs=outcome.partial_outputs
                )
            if not handout.started and outcome.exit_code is not None:
                # The model ran but its start was never heard of: a run must be running to end.
                self._reports.append(Started(attempt_id, handout.handle, utcnow()))
        self._copy_log(handout.job)  # before Finished: a run that has ended shows its whole log
        with self._changed:
            self._reports.append(Finished(attempt_id, outcome))
        self._wake()

    # --- files of a handed-out attempt ----------------------------------------------------------

    def holds(self, attempt_id: int) -> bool:
        """Whether the attempt is handed out by this pool and has not ended."""
        with self._changed:
            return attempt_id in self._handed

    def job_of(self, attempt_id: int) -> AttemptJob:
        """The job of an attempt handed out and not ended; Conflict otherwise."""
        with self._changed:
            handout = self._handed.get(attempt_id)
            if handout is None:
                raise Conflict(f"attempt {attempt_id} is not running on pool '{self.name}'", attempt=attempt_id)
            return handout.job

    def require_readable(self, attempt_id: int, key: str) -> None:
        """UnsafeKey for a key that could leave the store; Forbidden unless the attempt needs the
        stored file (or folder) ``key``: its model snapshot, its inputs' data versions, its
        upstream outputs, the checkpoints of its run's earlier attempts, its own folder."""
        job = self.job_of(attempt_id)
        clean_key(key)
        exact = {self._key_of(job.snapshot_uri), *(self._key_of(u.uri) for u in job.upstream)}
        folders = [
            *(snapshot_prefix(i.dataset, i.version) for i in job.inputs),
            *(checkpoints.stored_key(job.run_id, n) for n in range(1, job.attempt_number)),
            attempt_prefix(job),
        ]
        if key in exact or any(key == f or key.startswith(f"{f}/") for f in folders):
            return
        raise Forbidden(f"attempt {attempt_id} has no business with the stored file {key}", attempt=attempt_id)

    def require_writable(self, attempt_id: int, key: str) -> None:
        """UnsafeKey for a key that could leave the store; Forbidden unless ``key`` lies in the
        attempt's own folder of the store."""
        job = self.job_of(attempt_id)
        clean_key(key)
        if not key.startswith(f"{attempt_prefix(job)}/"):
            raise Forbidden(f"attempt {attempt_id} may only store files under {attempt_prefix(job)}/")

    def _silent_outcome(self, handout: _Handout) -> Outcome:
        if handout.stop_reason is not None:
            return stopped(handout.stop_reason)  # it was being stopped: it ends as it was stopped
        silent = f"no heartbeat from worker {handout.worker} for {self._config.lease_seconds:g}s"
        with _about(handout.job, self.name):
            log.warning("attempt %s lost: %s", handout.job.attempt_id, silent)
        return Outcome(AttemptStatus.LOST, error=f"its worker was lost: {silent}")

    def _copy_log(self, job: AttemptJob) -> None:
        uri = self._artifacts.uri(log_key(job.run_id, job.attempt_number))
        target = self._logs.path(job.run_id, job.attempt_number)
        try:
            with self._artifacts.open(uri) as source, target.open("wb") as copy:
                shutil.copyfileobj(source, copy)
        except FileNotFoundError:
            pass  # stopped or lost before it left one: what was streamed stays
        except Exception as exc:  # the attempt's ending matters more than its log
            log.warning("attempt %s: its log could not be copied from %s: %s", job.attempt_id, uri, exc)

    def _check_outputs(self, handout: _Handout, outcome: Outcome) -> None:
        """UnsafeKey or Forbidden if the worker names outputs outside its attempt's outputs folder."""
        folder = f"{attempt_prefix(handout.job)}/outputs"
        for output in (*outcome.outputs, *outcome.partial_outputs):
            if output.uri != self._artifacts.uri(f"{folder}/{clean_key(output.path, 'output')}"):
                raise Forbidden(f"output {output.path!r} is not stored in the attempt's outputs folder {folder}/")

    def _key_of(self, uri: str) -> str:
        prefix = f"{self._artifacts.url}/"
        return uri[len(prefix) :] if uri.startswith(prefix) else uri


def attempt_prefix(job: AttemptJob) -> str:
    """The attempt's own folder in the artifact store (outputs, log, outcome, checkpoint)."""
    return f"runs/{job.run_id}/attempts/{job.attempt_number}"


def _about(job: AttemptJob, pool: str) -> AbstractContextManager[None]:
    """Lines logged in the block name the attempt (this backend's lines come from request threads)."""
    return about_attempt(run_id=job.run_id, attempt_id=job.attempt_id, model=job.model_name, backend=pool)
