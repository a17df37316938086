"""``modelrunner worker``: claims attempts of one pool from the server over HTTP and runs each
with RemoteAttempt (the model contract, which also sends the model's log and progress), sending
heartbeats, until stopped.

While the server cannot be reached the models keep running and every call is tried again: back
within the lease, the attempt goes on; later, the server refuses the attempt (it was declared
lost and runs elsewhere), and the worker stops the model and drops its result.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from modelrunner.engine.states import AttemptStatus
from modelrunner.errors import ModelrunnerError
from modelrunner.execution.confinement import ModelUser
from modelrunner.execution.job import Outcome
from modelrunner.execution.remote import RemoteAttempt, RemoteJob, outcome_to_dict, parse_job
from modelrunner.execution.server_link import AttemptChannel, AttemptGone, Refused, ServerArtifacts, detail_of
from modelrunner.execution.supervision import SupervisorService
from modelrunner.process_log import about_attempt

log = logging.getLogger("modelrunner.worker")

_CLAIM_WAIT_SECONDS = 20.0
_RECONNECT_SECONDS = (0.5, 30.0)  # first and longest wait between tries to reach the server


@dataclass(frozen=True)
class WorkerConfig:
    server: str
    token: str
    pool: str
    slots: int = 1
    name: str = dataclasses.field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    workdir: Path | None = None  # where attempts' temporary folders go (the system's by default)
    user: ModelUser | None = None  # who models run as (this process's user when None)


class Worker:
    """One worker process: ``run()`` serves the pool until ``stop()`` (a signal handler may call
    it); raises ModelrunnerError when the server refuses the worker (a bad token, no such pool)."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self._server = config.server.rstrip("/")
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._running: dict[int, _AttemptRun] = {}
        self._slot_freed = threading.Condition(self._lock)
        self._fatal: ModelrunnerError | None = None
        self.supervisors = SupervisorService()  # the supervisors of this worker's attempts
        self._claims = httpx.Client(
            timeout=httpx.Timeout(_CLAIM_WAIT_SECONDS + 10, connect=5.0),
            headers={"Authorization": f"Bearer {config.token}"},
        )

    def run(self) -> None:
        log.info(
            "worker %s serves pool '%s' of %s with %s slot(s)",
            self.config.name,
            self.config.pool,
            self._server,
            self.config.slots,
        )
        claimer = threading.Thread(target=self._claim_loop, name="claims", daemon=True)
        claimer.start()
        while not self._stopping.wait(0.5):
            pass
        self._claims.close()  # ends a claim waiting for work
        for attempt in self._attempts():
            attempt.stop(AttemptStatus.PREEMPTED)  # no fault of the model: it runs again elsewhere
        for attempt in self._attempts():
            attempt.join()
        self.supervisors.close()
        # A claim waiting for work cannot be interrupted; the server hears the worker hang up.
        claimer.join(0.2)
        if self._fatal is not None:
            raise self._fatal
        log.info("worker %s stopped", self.config.name)

    def stop(self) -> None:
        """Stop claiming, stop the running models (their attempts end preempted and run again
        elsewhere), and let ``run()`` return once their endings are reported."""
        self._stopping.set()
        with self._lock:
            self._slot_freed.notify_all()

    # --- claiming -------------------------------------------------------------------------------

    def _claim_loop(self) -> None:
        wait = _RECONNECT_SECONDS[0]
        unreachable_since: float | None = None
        while not self._stopping.is_set():
            with self._lock:
                while len(self._running) >= self.config.slots and not self._stopping.is_set():
                    self._slot_freed.wait()
            if self._stopping.is_set():
                return
            try:
                claimed = self._claim()
            except Refused as exc:
                self._fatal = exc
                self.stop()
                return
            except httpx.HTTPError as exc:
                if self._stopping.is_set():
                    return
                if unreachable_since is None:
                    unreachable_since = time.monotonic()
                    log.warning("cannot reach the server %s (%s); trying again", self._server, exc)
                self._stopping.wait(wait)
                wait = min(wait * 2, _RECONNECT_SECONDS[1])
                continue
            if unreachable_since is not None:
                log.info("the server %s answers again", self._server)
                unreachable_since = None
            wait = _RECONNECT_SECONDS[0]
            if claimed is not None:
                self._start(claimed)

    def _claim(self) -> dict[str, Any] | None:
        response = self._claims.post(
            f"{self._server}/api/v1/pools/{self.config.pool}/claim",
            params={"wait": _CLAIM_WAIT_SECONDS},
            json={"worker": self.config.name},
        )
        if response.status_code == 204:
            return None
        if response.status_code in (401, 403):
            raise Refused(
                f"the server {self._server} refused the worker's token: {detail_of(response)}\n"
                "give the worker a token of a site admin or of a member of the group 'workers' "
                "(MODELRUNNER_TOKEN or --token; create one with `modelrunner tokens create --user NAME`)"
            )
        if response.status_code == 404:
            raise Refused(detail_of(response))
        if response.status_code >= 500:
            raise httpx.HTTPStatusError(
                f"the server answered {response.status_code}", request=response.request, response=response
            )
        if response.status_code != 200:
            raise Refused(f"the server refused the claim ({response.status_code}): {detail_of(response)}")
        claimed: dict[str, Any] = response.json()
        return claimed

    def _start(self, claimed: dict[str, Any]) -> None:
        attempt = _AttemptRun(self, claimed)
        with self._lock:
            self._running[attempt.attempt_id] = attempt
        attempt.start()
        if self._stopping.is_set():  # claimed while stopping: give it back at once
            attempt.stop(AttemptStatus.PREEMPTED)

    def _ended(self, attempt_id: int) -> None:
        with self._lock:
            self._running.pop(attempt_id, None)
            self._slot_freed.notify_all()

    def _attempts(self) -> list[_AttemptRun]:
        with self._lock:
            return list(self._running.values())


class _AttemptRun:
    """One claimed attempt: the model runs in one thread (RemoteAttempt, which also sends the
    log), heartbeats go from another."""

    def __init__(self, worker: Worker, claimed: dict[str, Any]) -> None:
        self.attempt_id = int(claimed["attempt_id"])
        self._worker = worker
        self._heartbeat_seconds = float(claimed["heartbeat_seconds"])
        server = worker.config.server.rstrip("/")
        remote = parse_job(json.dumps(claimed["job"]))
        # Progress goes to the server as this worker reaches it, whatever URL the server thinks it has.
        job = dataclasses.replace(remote.job, callback_url=f"{server}/api/v1/attempts/{self.attempt_id}")
        self.job = job
        self._channel = AttemptChannel(server, self.attempt_id, str(claimed["callback_token"]))
        self._folder = Path(
            tempfile.mkdtemp(prefix=f"modelrunner-worker-{self.attempt_id}-", dir=worker.config.workdir)
        )
        if worker.config.user is not None:
            self._folder.chmod(0o711)  # the model's user passes through to its scratch folder
        self._attempt = RemoteAttempt(
            RemoteJob(job, remote.artifacts_url, remote.grace_seconds),
            workdir=self._folder,
            artifacts=ServerArtifacts(self._channel, remote.artifacts_url),
            user=worker.config.user,
            supervisors=worker.supervisors,
        )
        self._pid: int | None = None
        self._pid_sent = False
        self._ended = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._follow, name=f"attempt-{self.attempt_id}", daemon=True)

    def start(self) -> None:
        with self._about():
            log.info("attempt %s (run %s, model %s): claimed", self.attempt_id, self.job.run_id, self.job.model_name)
        self._thread.start()

    def _about(self) -> contextlib.AbstractContextManager[None]:
        return about_attempt(
            run_id=self.job.run_id,
            attempt_id=self.attempt_id,
            model=self.job.model_name,
            backend=self._worker.config.pool,
        )

    def stop(self, reason: AttemptStatus) -> None:
        self._attempt.stop(reason)

    def join(self) -> None:
        self._thread.join()

    def _follow(self) -> None:
        with self._about():
            self._follow_model()

    def _follow_model(self) -> None:
        outcomes: list[Outcome] = []

        def run_model() -> None:
            try:
                outcomes.append(self._attempt.run(on_started=self._started))
            finally:
                self._wake.set()  # report the ending now, not at the next heartbeat

        runner = threading.Thread(
            target=contextvars.copy_context().run, args=(run_model,), name=f"model-{self.attempt_id}", daemon=True
        )
        runner.start()
        try:
            unreachable = False
            while runner.is_alive():
                self._wake.wait(self._heartbeat_seconds)
                self._wake.clear()
                if not runner.is_alive() or self._channel.gone.is_set():
                    continue
                unreachable = self._beat(unreachable)
            runner.join()
            outcome = (
                outcomes[0] if outcomes else Outcome(AttemptStatus.FAILED, error="the attempt ended without an outcome")
            )
            self._report(outcome)
        finally:
            self._channel.close()
            shutil.rmtree(self._folder, ignore_errors=True)
            self._worker._ended(self.attempt_id)

    def _started(self, pid: int) -> None:
        self._pid = pid
        log.info("attempt %s: the model runs (pid %s)", self.attempt_id, pid)
        self._wake.set()

    def _beat(self, unreachable: bool) -> bool:
        """Send a heartbeat; whether the server is unreachable now."""
        try:
            answer = self._channel.once(
                "POST", "/heartbeat", json={"pid": self._pid, "host": socket.gethostname()}
            ).json()
        except AttemptGone as exc:
            log.warning("%s; stopping its model and dropping its result", exc.message)
            self._attempt.stop(AttemptStatus.LOST)
            return False
        except (httpx.HTTPError, ModelrunnerError) as exc:
            if not unreachable:
                log.warning("attempt %s: cannot reach the server (%s); the model keeps running", self.attempt_id, exc)
            return True
        if unreachable:
            log.info("attempt %s: the server answers again; the attempt goes on", self.attempt_id)
        if answer["action"] == "stop":
            log.info(
                "attempt %s: the server says stop (%s)", self.attempt_id, answer.get("message") or answer["reason"]
            )
            self._attempt.stop(AttemptStatus(answer["reason"]))
        return False

    def _report(self, outcome: Outcome) -> None:
        if self._channel.gone.is_set():
            log.warning(
                "attempt %s: ended %s; the result is dropped (the server gave the attempt up)",
                self.attempt_id,
                outcome.status,
            )
            return
        try:
            self._channel.call("POST", "/finish", json=outcome_to_dict(outcome))
        except AttemptGone as exc:
            log.warning(
                "attempt %s: ended %s, but %s; the result is dropped", self.attempt_id, outcome.status, exc.message
            )
            return
        except ModelrunnerError as exc:
            log.error(
                "attempt %s: its ending (%s) could not be reported: %s", self.attempt_id, outcome.status, exc.message
            )
            return
        log.info(
            "attempt %s: %s", self.attempt_id, outcome.status.value + (f" ({outcome.error})" if outcome.error else "")
        )
