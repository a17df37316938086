"""The ``local`` backend: attempts as supervised processes on this machine, a slot per CPU asked."""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
import os
import queue
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import psutil

from modelrunner.artifacts.logs import LogStore
from modelrunner.artifacts.store import ArtifactStore
from modelrunner.backends.base import Finished, Handle, Progressed, Report, Started
from modelrunner.clock import utcnow
from modelrunner.data.cache import DataCache
from modelrunner.engine.runner_identity import HOST
from modelrunner.engine.states import AttemptStatus
from modelrunner.execution import checkpoints
from modelrunner.execution.confinement import DEFAULT_MODEL_USER, ModelUser, can_run, confine_state_folder
from modelrunner.execution.environments import ENVIRONMENTS_FOLDER, Environments
from modelrunner.execution.job import AttemptJob, Outcome
from modelrunner.execution.process import AttemptProcess
from modelrunner.execution.supervision import SupervisorService
from modelrunner.spec.model_version import unpack

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalConfig:
    slots: int
    grace_seconds: float
    state_dir: Path
    user: ModelUser | None = None  # who models run as; the server's user when None


class _Slots:
    """Counting slots that an attempt waits for; a stopped attempt gives up waiting."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._used = 0
        self._changed = threading.Condition()

    def acquire(self, count: int, stopped: Callable[[], bool]) -> bool:
        with self._changed:
            while self._used + count > self.total:
                if stopped():
                    return False
                self._changed.wait(0.2)
            self._used += count
            return True

    def release(self, count: int) -> None:
        with self._changed:
            self._used -= count
            self._changed.notify_all()


class LocalBackend:
    """Runs each attempt in a (pooled) thread of this process that follows the model's supervisor.

    It takes up to twice as many attempts as it has slots: the extra ones prepare their scratch
    folders and start the moment a slot frees, so no slot idles while the dispatcher catches up.
    """

    type: ClassVar[str] = "local"

    def __init__(
        self,
        config: LocalConfig,
        artifacts: ArtifactStore,
        logs: LogStore,
        wake: Callable[[], None],
        data: DataCache | None = None,
    ) -> None:
        self._config = config
        self._data = data
        self._artifacts = artifacts
        self._logs = logs
        self._wake = wake
        self._slots = _Slots(config.slots)
        self._lock = threading.Lock()
        self._running: dict[int, AttemptProcess] = {}
        self._taken = 0  # slots of the attempts held, running or waiting for a slot
        self._reports: queue.SimpleQueue[Report] = queue.SimpleQueue()
        self._environment = dict(os.environ)  # read once: copying os.environ costs per attempt
        self._supervisors = SupervisorService()
        self._environments = Environments(config.state_dir / ENVIRONMENTS_FOLDER, config.user)
        # As many threads as attempts held at most (free_slots): no attempt waits for a thread,
        # and none is started per attempt.
        self._attempts = ThreadPoolExecutor(2 * config.slots, thread_name_prefix="attempt")
        if config.user is None and os.geteuid() == 0 and self.type == "local":
            log.warning(
                "models run as root, as this server does: they can read its memory, environment and files; "
                "name an unprivileged user in `run_as` of the local backend, or create the user %r",
                DEFAULT_MODEL_USER,
            )
        if config.user is not None:
            confine_state_folder(config.state_dir, config.user, ("scratch", "checkpoints", ENVIRONMENTS_FOLDER))
            if not can_run(config.user, sys.executable):
                log.warning(
                    "models run as %r, who cannot run %s: a model whose command starts with `python` will fail; "
                    "install modelrunner where that user can read and run it",
                    config.user.name,
                    sys.executable,
                )

    def free_slots(self) -> int:
        with self._lock:
            return 2 * self._config.slots - self._taken

    def health(self) -> str | None:
        return None  # this machine: always reachable

    def submit(self, job: AttemptJob) -> Handle:
        slots = min(job.slots, self._config.slots)  # a model asking for more than there is still runs
        process = self._new_process(job)
        with self._lock:
            self._running[job.attempt_id] = process
            self._taken += slots
        # The attempt's thread logs as its submitter does: naming the run and the attempt.
        self._attempts.submit(contextvars.copy_context().run, self._execute, process, slots)
        return {"host": HOST, "attempt_id": job.attempt_id, "run_id": job.run_id, "attempt": job.attempt_number}

    def _new_process(self, job: AttemptJob) -> AttemptProcess:
        """The attempt's process, not started (a container backend's starts the model's image)."""
        return AttemptProcess(
            job,
            model_folder=self._model_folder(job.snapshot_uri),
            scratch=self._scratch(job.run_id, job.attempt_number),
            checkpoint=checkpoints.local_folder(self._config.state_dir, job.run_id),
            log_path=self._logs.path(job.run_id, job.attempt_number),
            grace_seconds=self._config.grace_seconds,
            supervisors=self._supervisors,
            environment=self._environment,
            user=self._config.user,
            data_folder=self._data.folder if self._data is not None else None,
            fetch_file=self._artifacts.get_file,
            environments=self._environments,
        )

    def poll(self, handles: Sequence[Handle]) -> list[Report]:
        # Every attempt of this backend reports through the queue; ``handles`` need no lookup.
        reports: list[Report] = []
        while True:
            try:
                reports.append(self._reports.get_nowait())
            except queue.Empty:
                return reports

    def cancel(self, handle: Handle, reason: AttemptStatus) -> None:
        with self._lock:
            process = self._running.get(int(handle.get("attempt_id", -1)))
        if process is not None:
            process.stop(reason)
        elif handle.get("host") == HOST:
            self._stop_orphan(handle)

    def close(self) -> None:
        """Wait until every attempt's process has ended (cancel them first)."""
        deadline = time.monotonic() + self._config.grace_seconds + 5
        while time.monotonic() < deadline:
            with self._lock:
                if not self._running:
                    break
            time.sleep(0.05)
        self._attempts.shutdown(wait=False)
        self._supervisors.close()

    def _execute(self, process: AttemptProcess, slots: int) -> None:
        job = process.job
        try:
            outcome = process.run(
                on_started=lambda pid: self._report(Started(job.attempt_id, _handle_of(job, pid), utcnow())),
                on_progress=lambda fraction, message: self._report(Progressed(job.attempt_id, fraction, message)),
                upload=lambda folder: self._artifacts.put_folder(
                    folder, f"runs/{job.run_id}/attempts/{job.attempt_number}/outputs"
                ),
                acquire_slot=lambda: self._slots.acquire(slots, lambda: process.stop_requested),
                release_slot=lambda: self._slots.release(slots),
            )
        except Exception as exc:  # an attempt must always report how it ended
            outcome = Outcome(AttemptStatus.FAILED, error=f"modelrunner could not run the attempt: {exc}")
        if outcome.status in checkpoints.RUN_IS_OVER:
            shutil.rmtree(checkpoints.local_folder(self._config.state_dir, job.run_id), ignore_errors=True)
        with self._lock:
            self._running.pop(job.attempt_id, None)
            self._taken -= slots
        self._report(Finished(job.attempt_id, outcome))

    def _report(self, report: Report) -> None:
        self._reports.put(report)
        self._wake()

    def _model_folder(self, snapshot_uri: str) -> Path:
        """The snapshot unpacked once into the state folder; attempts copy their files from it."""
        folder = self._config.state_dir / "models" / hashlib.sha256(snapshot_uri.encode()).hexdigest()[:32]
        if not folder.is_dir():
            unpacking = folder.with_name(f"{folder.name}.{uuid.uuid4().hex}.tmp")
            unpack(self._artifacts.get_bytes(snapshot_uri), unpacking)
            try:
                unpacking.rename(folder)  # atomic: a folder that exists is complete
            except OSError:
                shutil.rmtree(unpacking, ignore_errors=True)  # another attempt unpacked it first
        return folder

    def _scratch(self, run_id: object, number: object) -> Path:
        return self._config.state_dir / "scratch" / f"{run_id}-{number}"

    def _stop_orphan(self, handle: Handle) -> None:
        """Stop what a crashed server of this installation left running for this attempt, if anything.

        The attempt's processes are those whose environment names its scratch folder, which is this
        installation's alone (run ids and attempt numbers repeat between installations on one
        machine), and, while the model's command still runs, every process of its group.
        """
        outputs = str(self._scratch(handle.get("run_id"), handle.get("attempt")) / "outputs")
        leader = _verified(handle) if "pid" in handle else None
        group = [
            process
            for process in psutil.process_iter()
            if (leader is not None and _pgid(process.pid) == leader.pid) or _names_folder(process, outputs)
        ]
        for member in group:
            _quietly(member.terminate)
        _, alive = psutil.wait_procs(group, timeout=self._config.grace_seconds)
        for member in alive:
            _quietly(member.kill)
        psutil.wait_procs(alive, timeout=5)


def _handle_of(job: AttemptJob, pid: int) -> Handle:
    try:
        created = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        created = time.time()
    return {
        "host": HOST,
        "attempt_id": job.attempt_id,
        "run_id": job.run_id,
        "attempt": job.attempt_number,
        "pid": pid,
        "created": created,
    }


def _verified(handle: Handle) -> psutil.Process | None:
    """The handle's process, unless its pid now belongs to another process."""
    try:
        process = psutil.Process(int(handle["pid"]))
        return process if abs(process.create_time() - float(handle.get("created", 0))) < 0.01 else None
    except psutil.NoSuchProcess:
        return None


def _names_folder(process: psutil.Process, outputs: str) -> bool:
    try:
        return process.environ().get("MODELRUNNER_OUTPUTS") == outputs
    except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
        return False


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def _quietly(action: Callable[[], None]) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        action()
