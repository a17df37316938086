"""One attempt away from the server (``modelrunner exec``, a Dask task): from a JSON job
description, with the model snapshot, inputs and outputs in the artifact store and progress and
the log posted back to the server over HTTP as the model runs.

Every non-local backend launches this same code on its machines; it only needs the artifact
store and, for progress and the live log, the server's callback URL."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from modelrunner.artifacts.keys import clean_key, resolve_under
from modelrunner.artifacts.store import ArtifactStore, StoredFile
from modelrunner.data.cache import snapshot_prefix
from modelrunner.engine.states import AttemptStatus
from modelrunner.errors import ModelrunnerError
from modelrunner.execution import checkpoints
from modelrunner.execution.confinement import ModelUser
from modelrunner.execution.environments import Environments, machine_folder
from modelrunner.execution.job import AttemptJob, JobInput, Outcome, UpstreamFile
from modelrunner.execution.process import AttemptProcess
from modelrunner.execution.supervision import SupervisorService
from modelrunner.spec.model_spec import Resources
from modelrunner.spec.model_version import unpack

log = logging.getLogger("modelrunner.exec")

# How long the end of an attempt waits for its last progress report or log to reach the server.
_FLUSH_SECONDS = 5.0
_LOG_SECONDS = 1.0  # how often the log's new lines go to the server
_LOG_CHUNK = 1 << 20
_LOG_BACKOFF_SECONDS = 30.0  # the longest wait between tries while the server cannot be reached
_POST_TIMEOUT = httpx.Timeout(5.0)


@dataclass(frozen=True)
class RemoteJob:
    """What ``modelrunner exec`` gets: the attempt, where the artifact store is, and how long a
    stopped model has between SIGTERM and SIGKILL."""

    job: AttemptJob
    artifacts_url: str
    grace_seconds: float

    def to_json(self) -> str:
        """The job description; :func:`parse_job` reads it back."""
        fields = {**asdict(self.job), "resources": self.job.resources.model_dump(mode="json", by_alias=True)}
        return json.dumps({**fields, "artifacts_url": self.artifacts_url, "grace_seconds": self.grace_seconds})


def parse_job(text: str) -> RemoteJob:
    """A job description (JSON) as a RemoteJob; ModelrunnerError naming what is wrong with it."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelrunnerError(f"the job description is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ModelrunnerError("the job description must be a JSON object")
    try:
        artifacts_url = str(raw.pop("artifacts_url"))
        grace_seconds = float(raw.pop("grace_seconds"))
        raw["command"] = [str(word) for word in raw["command"]]
        raw["declared_outputs"] = tuple(raw.get("declared_outputs", ()))
        raw["inputs"] = tuple(JobInput(**entry) for entry in raw.get("inputs", ()))
        raw["upstream"] = tuple(UpstreamFile(**entry) for entry in raw.get("upstream", ()))
        raw["passed_variables"] = tuple(str(name) for name in raw.get("passed_variables", ()))
        raw["progress_bars"] = bool(raw.get("progress_bars", True))
        raw["profile_variables"] = {str(k): str(v) for k, v in dict(raw.get("profile_variables") or {}).items()}
        raw["resources"] = Resources.model_validate(raw.get("resources", {}))
        job = AttemptJob(**raw)
    except KeyError as exc:
        raise ModelrunnerError(f"the job description lacks the field {exc.args[0]!r}") from exc
    except (TypeError, ValueError) as exc:
        raise ModelrunnerError(f"the job description is not a modelrunner job: {exc}") from exc
    if not job.command and job.notebook is None and job.image is None:
        raise ModelrunnerError("the job description has no command, notebook or image")
    return RemoteJob(job, artifacts_url, grace_seconds)


def outcome_to_dict(outcome: Outcome) -> dict[str, Any]:
    """An Outcome as JSON-able data; :func:`outcome_from_dict` reads it back."""
    return {
        "status": outcome.status.value,
        "exit_code": outcome.exit_code,
        "error": outcome.error,
        "outputs": [stored.as_row() for stored in outcome.outputs],
        "partial_outputs": [stored.as_row() for stored in outcome.partial_outputs],
    }


def outcome_from_dict(data: Mapping[str, Any]) -> Outcome:
    """ValueError (UnsafeKey) when an output's path could leave a folder: steps downstream find
    outputs at their paths."""
    outputs = [StoredFile(**row) for row in data.get("outputs", [])]
    partial = [StoredFile(**row) for row in data.get("partial_outputs", [])]
    for output in (*outputs, *partial):
        clean_key(output.path, "output")
    return Outcome(
        AttemptStatus(data["status"]),
        exit_code=data.get("exit_code"),
        error=data.get("error"),
        outputs=outputs,
        partial_outputs=partial,
    )


class RemoteAttempt:
    """Runs one RemoteJob with AttemptProcess in a temporary folder of this machine.

    ``run()`` blocks until the attempt ends and never raises for what the model does; ``stop()``
    (from any thread or a signal handler) ends it: SIGTERM to everything the model started, SIGKILL
    after the grace period.
    """

    def __init__(
        self,
        remote: RemoteJob,
        *,
        workdir: Path | None = None,
        artifacts: ArtifactStore | None = None,
        user: ModelUser | None = None,
        supervisors: SupervisorService | None = None,
        environments: Environments | None = None,
    ) -> None:
        """``workdir``: where the temporary folder is made (the system's temp folder by default);
        ``artifacts``: the store as this machine reaches it (``remote.artifacts_url`` by default;
        ``modelrunner worker`` reaches it through the server); ``user``: who the model runs as
        (this process's user when None); ``supervisors``: the runner's supervisor service (one
        of its own for this attempt when None); ``environments``: where models' environments are
        built and kept on this machine (see ``environments.machine_folder``, the default)."""
        self.remote = remote
        self._workdir = workdir
        self._artifacts = artifacts
        self._user = user
        self._supervisors = supervisors
        self._environments = environments or Environments(machine_folder(), user)
        self._lock = threading.Lock()
        self._process: AttemptProcess | None = None
        self._stop_reason: AttemptStatus | None = None

    def stop(self, reason: AttemptStatus = AttemptStatus.CANCELLED) -> None:
        """End the attempt as ``reason``; safe to call repeatedly, before or while it runs."""
        with self._lock:
            if self._stop_reason is None:
                self._stop_reason = reason
            process = self._process
        if process is not None:
            process.stop(reason)

    def run(self, on_started: Callable[[int], None] = lambda pid: None) -> Outcome:
        """Run the attempt; ``on_started`` gets the model's pid once its command runs. The
        outcome is also left in the artifact store (``outcome_key``), with the log (``log_key``):
        a backend whose engine tells only that a job ended reads how it ended there."""
        job = self.remote.job
        artifacts = self._artifacts or ArtifactStore(self.remote.artifacts_url)
        supervisors = self._supervisors or SupervisorService()
        try:
            outcome = self._run(job, artifacts, supervisors, on_started)
        finally:
            if self._supervisors is None:
                supervisors.close()
        _leave(
            artifacts, outcome_key(job.run_id, job.attempt_number), json.dumps(outcome_to_dict(outcome)).encode(), job
        )
        return outcome

    def _run(
        self,
        job: AttemptJob,
        artifacts: ArtifactStore,
        supervisors: SupervisorService,
        on_started: Callable[[int], None],
    ) -> Outcome:
        reporter = ProgressReporter(job.callback_url, job.callback_token)
        folder = Path(tempfile.mkdtemp(prefix=f"modelrunner-{job.run_id}-{job.attempt_number}-", dir=self._workdir))
        if self._user is not None:
            folder.chmod(0o711)  # the model's user passes through to its own scratch folder, lists nothing
        shipper = LogShipper(job.callback_url, job.callback_token, folder / "attempt.log")
        try:
            model_folder = folder / "snapshot"
            try:
                unpack(artifacts.get_bytes(job.snapshot_uri), model_folder)
            except (OSError, ValueError) as exc:
                return Outcome(AttemptStatus.FAILED, error=f"cannot fetch the model snapshot {job.snapshot_uri}: {exc}")
            checkpoint = folder / "checkpoint"
            resumed = checkpoints.restore(artifacts, job, checkpoint)
            if resumed is not None:
                with (folder / "attempt.log").open("ab") as note:
                    note.write(f"modelrunner: MODELRUNNER_CHECKPOINT holds what attempt {resumed} left\n".encode())
            process = AttemptProcess(
                job,
                model_folder=model_folder,
                scratch=folder / "scratch",
                checkpoint=checkpoint,
                log_path=folder / "attempt.log",
                grace_seconds=self.remote.grace_seconds,
                supervisors=supervisors,
                data_folder=_DataFromStore(artifacts, job.inputs, folder / "data"),
                fetch_file=artifacts.get_file,
                user=self._user,
                environments=self._environments,
            )
            with self._lock:
                self._process = process
                reason = self._stop_reason
            if reason is not None:
                process.stop(reason)
            shipper.start()
            outcome = process.run(
                on_started=on_started,
                on_progress=reporter.report,
                upload=lambda outputs: artifacts.put_folder(
                    outputs, f"runs/{job.run_id}/attempts/{job.attempt_number}/outputs"
                ),
            )
            if outcome.status not in checkpoints.RUN_IS_OVER:
                checkpoints.keep(artifacts, job, checkpoint)  # for the next attempt, wherever it runs
            return outcome
        except Exception as exc:  # the attempt must end with an outcome, whatever went wrong here
            log.exception("attempt %s could not run", job.attempt_id)
            return Outcome(AttemptStatus.FAILED, error=f"modelrunner exec could not run the attempt: {exc}")
        finally:
            reporter.close()
            shipper.close()
            _leave_log(artifacts, folder / "attempt.log", job)
            shutil.rmtree(folder, ignore_errors=True)


def log_key(run_id: int, attempt_number: int) -> str:
    """Where a remote attempt leaves its log in the artifact store, for the server to fetch."""
    return f"runs/{run_id}/attempts/{attempt_number}/attempt.log"


def outcome_key(run_id: int, attempt_number: int) -> str:
    """Where a remote attempt leaves its outcome (JSON, see ``outcome_from_dict``)."""
    return f"runs/{run_id}/attempts/{attempt_number}/outcome.json"


def _leave_log(artifacts: ArtifactStore, log_file: Path, job: AttemptJob) -> None:
    if log_file.exists():
        _leave(artifacts, log_key(job.run_id, job.attempt_number), log_file.read_bytes(), job)


def _leave(artifacts: ArtifactStore, key: str, data: bytes, job: AttemptJob) -> None:
    try:
        artifacts.put_bytes(key, data)
    except Exception as exc:  # the backend hears of it (a job that ended without an outcome: lost)
        log.warning("attempt %s: %s could not be stored: %s", job.attempt_id, key, exc)


class _DataFromStore:
    """The files of the job's inputs, from the copies the server keeps in the artifact store
    (versions of ``files`` and ``http`` datasets); other versions cannot be reached from here."""

    def __init__(self, artifacts: ArtifactStore, inputs: tuple[JobInput, ...], root: Path) -> None:
        self._artifacts = artifacts
        self._inputs = inputs
        self._root = root

    def __call__(self, dataset: str, version: str) -> Path:
        folder = Path(resolve_under(self._root, f"{dataset}/{version}", "data version"))
        if folder.is_dir():
            return folder
        prefix = snapshot_prefix(dataset, version)
        if not self._artifacts.exists(prefix):
            names = ", ".join(repr(i.name) for i in self._inputs if (i.dataset, i.version) == (dataset, version))
            raise ModelrunnerError(
                f"input {names}: version {version} of dataset '{dataset}' is not in the artifact store "
                f"{self._artifacts.url}, and this backend reads inputs only from there (versions of git "
                "datasets are not copied to it; run such models on the local backend)"
            )
        partial = folder.with_name(f"{version}.partial")
        self._artifacts.get_folder(prefix, partial)
        partial.rename(folder)
        return folder


class ProgressReporter:
    """Posts the latest progress to the attempt's callback URL from a thread of its own.

    Best effort: a report replaced by a newer one before it was sent is dropped, a server that
    cannot be reached is tried again, and nothing here ever fails the attempt."""

    def __init__(self, callback_url: str | None, token: str | None) -> None:
        self._url = f"{callback_url.rstrip('/')}/progress" if callback_url and token else None
        self._headers = {"Authorization": f"Bearer {token}"}
        self._changed = threading.Condition()
        self._latest: tuple[float, str] | None = None
        self._closing = False
        self._thread: threading.Thread | None = None

    def report(self, fraction: float, message: str) -> None:
        if self._url is None:
            return
        with self._changed:
            self._latest = (fraction, message)
            if self._thread is None:
                self._thread = threading.Thread(target=self._send_loop, name="progress-reporter", daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def close(self) -> None:
        """Send what is pending (waiting a few seconds at most), then stop."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(_FLUSH_SECONDS)

    def _send_loop(self) -> None:
        with httpx.Client(timeout=_POST_TIMEOUT, headers=self._headers) as client:
            delay = 0.0
            while True:
                with self._changed:
                    while self._latest is None and not self._closing:
                        self._changed.wait()
                    pending, self._latest = self._latest, None
                    closing = self._closing
                if pending is None:
                    return
                if not self._send(client, pending):
                    if closing:
                        return
                    with self._changed:
                        if self._latest is None:
                            self._latest = pending  # try again, unless something newer came meanwhile
                        delay = min(max(delay * 2, 0.25), 5.0)
                        self._changed.wait(delay)
                else:
                    delay = 0.0

    def _send(self, client: httpx.Client, report: tuple[float, str]) -> bool:
        """Whether the report is done with (sent, or refused for good)."""
        fraction, message = report
        if self._url is None:
            return True
        try:
            response = client.post(self._url, json={"fraction": fraction, "message": message[:2000]})
        except httpx.HTTPError as exc:
            log.warning("progress not sent (will try again): %s", exc)
            return False
        if response.status_code >= 500:
            log.warning("progress not sent (will try again): the server answered %s", response.status_code)
            return False
        if response.status_code in (401, 403):
            # The attempt has ended for the server (or the token is not its): later reports are refused too.
            log.warning("progress refused by the server (%s); no more reports", response.status_code)
            self._url = None
        elif response.status_code >= 400:
            log.warning("progress refused by the server (%s): %s", response.status_code, response.text[:200])
        return True


class LogShipper:
    """Sends the attempt's log to the server as it grows, from a thread of its own, so that the
    run's log can be followed while the attempt runs away from the server.

    Best effort, as progress is: the whole log also goes to the artifact store when the attempt
    ends, and the backend copies it from there. The server skips bytes it has, so a chunk sent
    twice (an answer lost on the way back) does no harm."""

    def __init__(self, callback_url: str | None, token: str | None, path: Path) -> None:
        self._url = f"{callback_url.rstrip('/')}/log" if callback_url and token else None
        self._headers = {"Authorization": f"Bearer {token}"}
        self._path = path
        self._sent = 0  # the server has the log up to here
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._url is not None:
            self._thread = threading.Thread(target=self._loop, name="log-shipper", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Send what the log has left (waiting a few seconds at most), then stop."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join(_FLUSH_SECONDS)

    def _loop(self) -> None:
        wait = _LOG_SECONDS
        with httpx.Client(timeout=_POST_TIMEOUT, headers=self._headers) as client:
            while self._url is not None:
                closing = self._closing.wait(wait)
                trouble = self._send_new(client)
                if trouble is not None and wait == _LOG_SECONDS:  # said once, not at every try
                    log.warning("the log cannot reach the server (will try again): %s", trouble)
                if closing:
                    return
                wait = _LOG_SECONDS if trouble is None else min(wait * 2, _LOG_BACKOFF_SECONDS)

    def _send_new(self, client: httpx.Client) -> str | None:
        """Send what the server does not have yet; what went wrong, or None."""
        while self._url is not None:
            try:
                with self._path.open("rb") as handle:
                    handle.seek(self._sent)
                    data = handle.read(_LOG_CHUNK)
            except FileNotFoundError:
                return None  # nothing written yet
            if not data:
                return None
            try:
                response = client.post(
                    self._url,
                    params={"offset": self._sent},
                    content=data,
                    headers={"Content-Type": "application/octet-stream"},
                )
            except httpx.HTTPError as exc:
                return str(exc)
            if response.status_code in (401, 403):
                # The attempt has ended for the server (or the token is not its): the rest is refused too.
                log.warning("log refused by the server (%s); no more is sent", response.status_code)
                self._url = None
            elif response.status_code != 200:
                return f"the server answered {response.status_code}"
            else:
                self._sent = int(response.json()["size"])
        return None
