"""What the backends that launch ``modelrunner exec`` in a container elsewhere share (AWS ECS
and Batch, Kubernetes, Azure Batch): the job description carried in the container's
environment, stop reasons a restarted server can read back, and how an attempt's outcome is read
from the artifact store once the engine says its task or job ended.

The container leaves the outcome and log in the artifact store (execution/remote.py), which must
therefore be reachable from where it runs (an ``s3://`` URL, say). None of this needs a cloud SDK."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from typing import Any

from modelrunner.artifacts.logs import LogStore
from modelrunner.artifacts.store import ArtifactStore
from modelrunner.backends.base import Finished, Handle, Report, Started
from modelrunner.clock import utcnow
from modelrunner.engine.states import AttemptStatus
from modelrunner.execution.job import AttemptJob, Outcome, stopped
from modelrunner.execution.remote import RemoteJob, log_key, outcome_from_dict, outcome_key

log = logging.getLogger("modelrunner.backends.exec_attempts")

EXEC_COMMAND = ["python", "-m", "modelrunner", "exec"]
"""What the container runs: the image must have modelrunner installed (and ``python`` on its PATH)."""

_STOP_PREFIX = "modelrunner: "
_ENDED_BY_MODEL = (AttemptStatus.SUCCEEDED, AttemptStatus.FAILED)


def exec_environment(job: AttemptJob, artifacts: ArtifactStore, grace_seconds: float) -> dict[str, str]:
    """The environment that makes ``modelrunner exec`` run ``job`` in the container."""
    return {"MODELRUNNER_JOB": RemoteJob(job, artifacts.url, grace_seconds).to_json()}


def attempt_name(attempt_id: int) -> str:
    """The name of the attempt's task or job (ECS ``startedBy``, Batch job, Kubernetes Job, Azure
    Batch task): found again by it from any process."""
    return f"modelrunner-attempt-{attempt_id}"


def stop_reason(reason: AttemptStatus) -> str:
    """The reason given with a stop (StopTask, TerminateJob, ...); :func:`asked_stop` reads it back."""
    return f"{_STOP_PREFIX}{reason.value}"


def asked_stop(reason: str | None) -> AttemptStatus | None:
    """The engine's reason, when modelrunner itself stopped the task or job (``reason`` is the
    engine's record of the stop)."""
    if reason and reason.startswith(_STOP_PREFIX):
        try:
            return AttemptStatus(reason[len(_STOP_PREFIX) :].strip())
        except ValueError:
            return None
    return None


class Attempts:
    """The attempts a backend launched and has not reported ended: how they end, and what to
    report about them. What the container left in the artifact store comes first."""

    def __init__(self, artifacts: ArtifactStore, logs: LogStore) -> None:
        self._artifacts = artifacts
        self._logs = logs
        self._lock = threading.Lock()
        self._active: set[int] = set()  # submitted and not yet reported finished
        self._started: set[int] = set()
        self._stopping: dict[int, AttemptStatus] = {}  # what the engine asked for, by attempt

    def count(self) -> int:
        with self._lock:
            return len(self._active)

    def add(self, attempt_id: int) -> None:
        with self._lock:
            self._active.add(attempt_id)

    def stopping(self, attempt_id: int, reason: AttemptStatus) -> None:
        with self._lock:
            self._stopping.setdefault(attempt_id, reason)

    def ending(
        self,
        handle: Handle,
        engine_reason: str | None,
        exit_code: Any,
        *,
        interrupted: str | None,
        what: str,
        refused: str | None = None,
        process: str = "the container",
        runs_in: str = "the image",
    ) -> Outcome:
        """How an attempt whose task or job its engine ended ended. ``engine_reason`` is the
        engine's reason for the stop, ``interrupted`` an error when the engine says its capacity
        was taken back, ``refused`` one when it could not start the task as asked (an image it
        cannot pull: failed, as a retry would be refused too), ``what`` names the task or job in
        errors, ``process`` and ``runs_in`` what exited and where modelrunner must be installed."""
        with self._lock:
            asked = self._stopping.get(int(handle["attempt_id"]))
        asked = asked or asked_stop(engine_reason)
        outcome = self._ended_by_model(handle)
        if outcome is not None:
            return outcome
        if asked is not None:
            return stopped(asked)
        if interrupted is not None:
            return Outcome(AttemptStatus.PREEMPTED, error=interrupted)
        if refused is not None:
            return Outcome(AttemptStatus.FAILED, error=refused)
        reason = engine_reason or "no reason given"
        if isinstance(exit_code, int) and exit_code != 0:
            # modelrunner exec leaves an outcome whatever the model does: it could not run at all.
            error = (
                f"{process} exited with status {exit_code} before modelrunner exec left an outcome "
                f"(does {runs_in} have modelrunner installed, and reach the artifact store?): {reason}"
            )
            return Outcome(AttemptStatus.FAILED, exit_code=exit_code, error=error)
        return Outcome(AttemptStatus.LOST, error=f"the {what} ended without an outcome: {reason}")

    def reports(self, handle: Handle, *, running: bool, at: dt.datetime | None, ending: Outcome | None) -> list[Report]:
        """Started once the attempt runs (or ended having run: a run must be running to end),
        then Finished once it ended."""
        attempt_id = int(handle["attempt_id"])
        ran = running or at is not None or (ending is not None and ending.exit_code is not None)
        reports: list[Report] = []
        with self._lock:
            report_start = ran and attempt_id not in self._started
            if report_start:
                self._started.add(attempt_id)
        if report_start:
            reports.append(Started(attempt_id, handle, at or utcnow()))
        if ending is not None:
            reports.append(self.finish(handle, ending))
        return reports

    def finish(self, handle: Handle, outcome: Outcome) -> Finished:
        attempt_id = int(handle["attempt_id"])
        self._fetch_log(handle)  # before Finished: a run that has ended shows its log
        with self._lock:
            self._active.discard(attempt_id)
            self._started.discard(attempt_id)
            self._stopping.pop(attempt_id, None)
        return Finished(attempt_id, outcome)

    def _ended_by_model(self, handle: Handle) -> Outcome | None:
        """The outcome the attempt left when its model ended by itself (succeeded or failed);
        None when it left none, or one of a stop (then the engine's reason for the stop tells more)."""
        key = outcome_key(int(handle["run_id"]), int(handle["attempt"]))
        try:
            outcome = outcome_from_dict(json.loads(self._artifacts.get_bytes(self._artifacts.uri(key))))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("attempt %s: its outcome in the artifact store cannot be read: %s", handle["attempt_id"], exc)
            return None
        return outcome if outcome.status in _ENDED_BY_MODEL else None

    def _fetch_log(self, handle: Handle) -> None:
        """Copy the attempt's log from the artifact store to the server's log store, if it left one."""
        run_id, number = int(handle["run_id"]), int(handle["attempt"])
        uri = self._artifacts.uri(log_key(run_id, number))
        try:
            self._artifacts.get_file(uri, self._logs.path(run_id, number))
        except FileNotFoundError:
            pass  # stopped before it wrote one
        except Exception as exc:  # the attempt's ending matters more than its log
            log.warning("attempt %s: its log could not be fetched from %s: %s", handle["attempt_id"], uri, exc)
