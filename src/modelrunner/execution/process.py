"""One attempt under the model contract, in a fresh scratch folder, under its supervisor."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import IO

from modelrunner.artifacts.keys import resolve_under
from modelrunner.artifacts.store import StoredFile
from modelrunner.engine.states import AttemptStatus
from modelrunner.errors import ModelrunnerError
from modelrunner.execution.confinement import ModelUser, give_to, model_environment
from modelrunner.execution.environments import Environment, Environments, machine_folder
from modelrunner.execution.failure_note import FAILURE_NOTE, NOTE_FILE, read_failure_note
from modelrunner.execution.forms import launch_command
from modelrunner.execution.job import AttemptJob, Outcome, stopped
from modelrunner.execution.output_files import keep_partial, refuse_irregular
from modelrunner.execution.output_follower import OnProgress, output_follower
from modelrunner.execution.r_helper import R_HELPER_FOLDER, RHelper, starts_r, with_library
from modelrunner.execution.supervision import SupervisorService
from modelrunner.spec.model_version import copy_model

# How long after the grace period a supervisor that has not ended is killed with the model.
_SUPERVISOR_MARGIN = 5.0
# Endings whose outputs folder is kept as the attempt's partial outputs (for debugging). A
# cancelled attempt too: whoever stops a run that looked stuck wants to see how far it got. Not
# a preempted or lost one: its runner is being taken away (the checkpoint is what must be saved
# in that time), and the run goes on in its next attempt.
_KEEPS_PARTIAL_OUTPUTS = frozenset({AttemptStatus.FAILED, AttemptStatus.TIMED_OUT, AttemptStatus.CANCELLED})

OnStarted = Callable[[int], None]
UploadOutputs = Callable[[Path], list[StoredFile]]
AcquireSlot = Callable[[], bool]
# The local folder holding a data version's files: (dataset, version) -> folder.
DataFolder = Callable[[str, str], Path]
# Copies a stored file (an upstream step's output) to a local path: (uri, destination).
FetchFile = Callable[[str, Path], None]


class AttemptProcess:
    """Runs one attempt: prepares the folders, starts the command, follows it, collects outputs.

    ``run()`` blocks until the attempt ends; ``stop()`` (from any thread) asks it to end: SIGTERM
    to everything the model started, SIGKILL after the grace period.
    """

    def __init__(
        self,
        job: AttemptJob,
        model_folder: Path,
        scratch: Path,
        checkpoint: Path,
        log_path: Path,
        grace_seconds: float,
        supervisors: SupervisorService,
        environment: Mapping[str, str] | None = None,
        user: ModelUser | None = None,
        data_folder: DataFolder | None = None,
        fetch_file: FetchFile | None = None,
        environments: Environments | None = None,
    ) -> None:
        """``model_folder`` holds the model's files at the version to run (they are copied into
        the scratch folder); ``supervisors`` starts the command under a supervisor;
        ``environment`` is this runner's environment (os.environ by default), of which the model
        sees only the allow-listed variables and the job's ``passed_variables``; ``user`` is who the model
        runs as (this process's user when None); ``data_folder`` provides the files of the job's
        inputs and ``fetch_file`` those of its upstream steps (needed when it has any);
        ``environments`` builds the model's own environment (needed when the job names one)."""
        self.job = job
        self._model_folder = model_folder
        self._environment = environment
        self._supervisors = supervisors
        self._user = user
        self._scratch = scratch
        self._checkpoint = checkpoint
        self._log_path = log_path
        self._grace = grace_seconds
        self._data_folder = data_folder
        self._fetch_file = fetch_file
        self._environments = environments
        self._lock = threading.Lock()
        self._supervisor_pid: int | None = None  # while the supervisor runs
        self._model_pid: int | None = None
        self._stop_reason: AttemptStatus | None = None
        self._kill_timer: threading.Timer | None = None
        self._start_error = ""

    def stop(self, reason: AttemptStatus) -> None:
        """End the attempt as ``reason`` (cancelled, timed_out, or preempted: to run again); safe to call
        repeatedly."""
        with self._lock:
            if self._stop_reason is not None:
                return
            self._stop_reason = reason
            supervising = self._supervisor_pid is not None
        if supervising:
            self._terminate()

    @property
    def stop_requested(self) -> bool:
        with self._lock:
            return self._stop_reason is not None

    def run(
        self,
        on_started: OnStarted,
        on_progress: OnProgress,
        upload: UploadOutputs,
        acquire_slot: AcquireSlot = lambda: True,
        release_slot: Callable[[], None] = lambda: None,
    ) -> Outcome:
        """Prepare the folders, then wait for ``acquire_slot`` (False: stopped while waiting), run
        the command, and call ``release_slot`` the moment the command exits, before outputs are
        collected, so the next attempt can start meanwhile."""
        try:
            try:
                model_dir, outputs_dir, env = self._prepare()
            except ModelrunnerError as exc:
                return self._preparation_failed(exc.message)
            if not acquire_slot():
                return self._outcome_of_stop() or Outcome(AttemptStatus.CANCELLED, error="stopped before it started")
            try:
                exit_code = self._execute(model_dir, env, on_started, on_progress)
            finally:
                release_slot()
            if exit_code is None:
                return self._outcome_of_stop() or Outcome(AttemptStatus.FAILED, error=self._start_error)
            return self._outcome(exit_code, outputs_dir, upload)
        finally:
            if self._kill_timer is not None:
                self._kill_timer.cancel()
            shutil.rmtree(self._scratch, ignore_errors=True)

    def _execute(
        self, model_dir: Path, env: dict[str, str], on_started: OnStarted, on_progress: OnProgress
    ) -> int | None:
        """Run the command under its supervisor to its end (and the end of all it started); its
        exit status, or None if it never started."""
        with self._log_path.open("ab") as log:
            if self.stop_requested:
                return None
            try:
                command = self._command(model_dir, env, log)
            except ModelrunnerError as exc:
                self._start_error = exc.message
                log.write(f"modelrunner: {self._start_error}\n".encode())
                return None
            if starts_r(command):
                env = self._with_r_helper(env, log)
            try:
                output_read, control_read = self._supervisors.launch(
                    command, env, str(model_dir), self._grace, self._user
                )
            except OSError as exc:
                self._start_error = f"cannot start the attempt's supervisor: {exc.strerror or exc}"
                log.write(f"modelrunner: {self._start_error}\n".encode())
                return None
            output_done = output_follower().follow(output_read, log, on_progress, bars=self.job.progress_bars)
            with os.fdopen(control_read, "rb") as control:
                kind, said = _report(control)
                if kind == "supervisor":
                    with self._lock:
                        self._supervisor_pid = int(said)
                        stopped_early = self._stop_reason is not None
                    if stopped_early:
                        self._terminate()
                    kind, said = _report(control)
                if kind == "started":
                    with self._lock:
                        self._model_pid = int(said)
                    on_started(int(said))
                else:
                    self._start_error = said or "the attempt's supervisor ended before the command started"
                kind, said = _report(control)
            with self._lock:
                self._supervisor_pid = None  # it has ended: its pid may soon name another process
            ended = kind == "exit"
            if self._model_pid is not None and not ended:
                # A supervisor killed by force may leave the model's group: nothing may hold the log pipe.
                _signal_group(self._model_pid, signal.SIGKILL)
            output_done.wait()
        if self._model_pid is None:
            return None
        return int(said) if ended else -signal.SIGKILL

    def _command(self, model_dir: Path, env: dict[str, str], log: IO[bytes]) -> list[str]:
        """The command the supervisor starts, with ``env`` made its environment (an image model's
        attempt starts the container engine instead: backends/container.py)."""
        return launch_command(self.job, self._built_environment(model_dir, env, log))

    def _built_environment(self, model_dir: Path, env: dict[str, str], log: IO[bytes]) -> Environment | None:
        """The model's own environment, built now unless it was before (its log goes to ``log``),
        with its variables put into ``env``; None when the model names none."""
        if self.job.environment is None:
            return None
        if self._environments is None:
            raise ModelrunnerError("this backend cannot build a model's environment")
        runner = os.environ if self._environment is None else self._environment
        built = self._environments.prepare(
            model_dir, self.job.environment, runner, self.job.passed_variables, log, lambda: self.stop_requested
        )
        env.update(built.variables(env.get("PATH", os.defpath)))
        return built

    def _with_r_helper(self, env: dict[str, str], log: IO[bytes]) -> dict[str, str]:
        """``env`` with modelrunner's R helper on R_LIBS (installed now by this machine's first R
        model, next to the environments). A model that cannot have it still runs, with the reason
        in its log: it may not call ``library(modelrunner)``."""
        root = self._environments.root if self._environments is not None else machine_folder()
        # The R on the runner's own PATH, never one a model's environment brings (a conda
        # environment's): the install runs as the runner, not as the model's user.
        runner = os.environ if self._environment is None else self._environment
        try:
            library = RHelper(root / R_HELPER_FOLDER).library(runner.get("PATH", os.defpath))
        except ModelrunnerError as exc:
            log.write(f"modelrunner: library(modelrunner) is not available to this model: {exc.message}\n".encode())
            return env
        return with_library(env, library)

    def _prepare(self) -> tuple[Path, Path, dict[str, str]]:
        model_dir = self._scratch / "model"
        inputs_dir = self._scratch / "inputs"
        outputs_dir = self._scratch / "outputs"
        for folder in (model_dir, inputs_dir, outputs_dir, self._checkpoint):
            folder.mkdir(parents=True, exist_ok=True)
        copy_model(self._model_folder, model_dir)
        for job_input in self.job.inputs:
            if self._data_folder is None:
                raise ModelrunnerError("this backend cannot provide dataset inputs")
            # A copy, not a link: a model that writes into its inputs must not change the cache.
            data = self._data_folder(job_input.dataset, job_input.version)
            if job_input.folder is not None:  # one folder of the version (refused at submit when not there)
                data = Path(resolve_under(data, job_input.folder, "input folder"))
            shutil.copytree(data, inputs_dir / job_input.name)
        for upstream in self.job.upstream:
            if self._fetch_file is None:
                raise ModelrunnerError("this backend cannot provide the outputs of upstream steps")
            destination = Path(resolve_under(inputs_dir, f"{upstream.folder}/{upstream.path}"))
            destination.parent.mkdir(parents=True, exist_ok=True)
            self._fetch_file(upstream.uri, destination)
        params_file = self._scratch / "params.json"
        params_file.write_text(json.dumps(self.job.params, indent=2), encoding="utf-8")
        temporary = self._scratch / "tmp"
        temporary.mkdir()
        if self._user is not None:
            give_to(self._user, self._scratch)
            give_to(self._user, self._checkpoint)
        contract = {
            "MODELRUNNER_RUN_ID": str(self.job.run_id),
            "MODELRUNNER_ATTEMPT": str(self.job.attempt_number),
            "MODELRUNNER_PARAMS": str(params_file),
            "MODELRUNNER_INPUTS": str(inputs_dir),
            "MODELRUNNER_OUTPUTS": str(outputs_dir),
            "MODELRUNNER_CHECKPOINT": str(self._checkpoint),
            "TMPDIR": str(temporary),  # removed with the scratch folder, and no other model's
            "PYTHONUNBUFFERED": "1",  # progress lines must arrive while the model runs
            FAILURE_NOTE: str(self._scratch / NOTE_FILE),  # why it failed, in its own words
        }
        if self.job.item is not None:
            contract["MODELRUNNER_ITEM"] = self.job.item
        if self.job.callback_url is not None and self.job.callback_token is not None:
            contract["MODELRUNNER_CALLBACK_URL"] = self.job.callback_url
            contract["MODELRUNNER_CALLBACK_TOKEN"] = self.job.callback_token
        runner = os.environ if self._environment is None else self._environment
        env = model_environment(runner, self.job.passed_variables, self._user, contract, self.job.profile_variables)
        return model_dir, outputs_dir, env

    def _preparation_failed(self, message: str) -> Outcome:
        error = f"the attempt could not be prepared: {message}"
        with self._log_path.open("ab") as log:
            log.write(f"modelrunner: {error}\n".encode())
        return Outcome(AttemptStatus.FAILED, error=error)

    def _outcome_of_stop(self) -> Outcome | None:
        with self._lock:
            reason = self._stop_reason
        return stopped(reason) if reason is not None else None

    def _outcome(self, exit_code: int, outputs_dir: Path, upload: UploadOutputs) -> Outcome:
        outcome = self._ending(exit_code, outputs_dir, upload)
        if outcome.status in _KEEPS_PARTIAL_OUTPUTS:
            return replace(outcome, partial_outputs=keep_partial(outputs_dir, upload, self._log_path))
        return outcome

    def _ending(self, exit_code: int, outputs_dir: Path, upload: UploadOutputs) -> Outcome:
        with self._lock:
            reason = self._stop_reason
        if reason is not None:
            return stopped(reason, exit_code)
        if exit_code != 0:
            described = f"signal {-exit_code}" if exit_code < 0 else f"exit status {exit_code}"
            note = read_failure_note(self._scratch / NOTE_FILE)
            described += f": {note}" if note else ""
            return Outcome(AttemptStatus.FAILED, exit_code=exit_code, error=f"the model ended with {described}")
        refused = refuse_irregular(outputs_dir, self.job.declared_outputs, self._log_path)
        if refused is not None:
            return Outcome(AttemptStatus.FAILED, exit_code=0, error=refused)
        missing = [p for p in self.job.declared_outputs if not (outputs_dir / p).is_file()]
        if missing:
            return Outcome(
                AttemptStatus.FAILED,
                exit_code=0,
                error="declared outputs were not written: " + ", ".join(missing),
            )
        return Outcome(AttemptStatus.SUCCEEDED, exit_code=0, outputs=upload(outputs_dir))

    def _terminate(self) -> None:
        """SIGTERM to the supervisor, which stops the model (SIGTERM, grace, SIGKILL); SIGKILL
        to both if it has not ended well after the grace period."""
        with self._lock:
            supervisor = self._supervisor_pid
        if supervisor is not None:
            _signal_process(supervisor, signal.SIGTERM)
        timer = threading.Timer(self._grace + _SUPERVISOR_MARGIN, self._kill)
        timer.daemon = True
        self._kill_timer = timer
        timer.start()

    def _kill(self) -> None:
        with self._lock:
            supervisor, model = self._supervisor_pid, self._model_pid
        if supervisor is not None:
            _signal_process(supervisor, signal.SIGKILL)
        if model is not None:
            _signal_group(model, signal.SIGKILL)


def _report(control: IO[bytes]) -> tuple[str, str]:
    """The supervisor's next report as (kind, what it says); ("", "") when it ended without one."""
    kind, _, said = control.readline().decode("utf-8", "replace").rstrip("\n").partition(" ")
    return kind, said


def _signal_process(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
