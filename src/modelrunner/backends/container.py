"""The ``container`` backend: image models as containers on this machine (podman or docker), with
the local backend's slots, supervisors, scratch folders and output following.

Each attempt is one container, named after the installation, the run and the attempt, and
labelled with the server process that started it. Cancel and timeouts stop it (the supervisor
signals the model, the engine's ``stop`` gives it the grace period), and it is removed once its
attempt has ended. A server that is killed takes its models with it (the supervisor kills
them), and the containers it leaves are removed when it starts again: the engine cancels the
attempts of the dead server (``cancel`` with a handle from another process), and the backend
removes at its start every container of the installation whose server is gone.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import pwd
import signal
import threading
import uuid
from dataclasses import replace
from pathlib import Path
from typing import IO, Any, ClassVar

from modelrunner.artifacts.logs import LogStore
from modelrunner.artifacts.store import ArtifactStore
from modelrunner.backends.base import Handle
from modelrunner.backends.local import LocalBackend, LocalConfig
from modelrunner.data.cache import DataCache
from modelrunner.engine.runner_identity import is_dead_runner, this_runner_id
from modelrunner.engine.states import AttemptStatus
from modelrunner.errors import ModelrunnerError
from modelrunner.execution import checkpoints
from modelrunner.execution.confinement import DEFAULT_MODEL_USER, ModelUser, give_to
from modelrunner.execution.container_cli import ContainerEngineMissing, call, container_cli
from modelrunner.execution.container_launch import ContainerRun, container_command
from modelrunner.execution.failure_note import NOTE_FILE
from modelrunner.execution.job import AttemptJob, Outcome
from modelrunner.execution.process import AttemptProcess, UploadOutputs
from modelrunner.spec.backend_spec import ContainerBackendSpec

log = logging.getLogger(__name__)

_NOBODY = 65534  # the unprivileged ids of a container without its own user for models
_ENGINE_FAILED = 125  # podman's and docker's exit status when they could not run the container
_KILLED = 128 + signal.SIGKILL  # a container's exit status when its model was killed
_INSTALLATION = "modelrunner.installation"
_RUNNER = "modelrunner.runner"


class ContainerAttemptProcess(AttemptProcess):
    """An attempt whose supervisor starts the container engine, which runs the model's image."""

    def __init__(
        self, job: AttemptJob, run: ContainerRun | None, name: str, owner: ModelUser | None, **kwargs: Any
    ) -> None:
        """``run`` says how (None: no engine is installed, which the attempt fails with); ``name``
        is the container's; ``owner`` is the user whose ids the container runs as, who is given
        the attempt's folders (None: the server's own user)."""
        super().__init__(job, **kwargs)
        self._run = run
        self._name = name
        self._owner = owner
        self._launched = False

    def _command(self, model_dir: Path, env: dict[str, str], log: IO[bytes]) -> list[str]:
        if self._run is None:
            raise ContainerEngineMissing("image models need podman or docker, which is not installed on this machine")
        (self._scratch / NOTE_FILE).touch()  # mounted into the container: it must exist
        if self._owner is not None and os.geteuid() == 0:
            give_to(self._owner, self._scratch)
            give_to(self._owner, self._checkpoint)
        runner = os.environ if self._environment is None else self._environment
        passed = {name: runner[name] for name in self.job.passed_variables if name in runner}
        command, client = container_command(self._run, self.job, self._name, self._scratch, self._checkpoint, passed)
        env.clear()
        env.update(client)
        log.write(f"modelrunner: running image {self.job.image} as container {self._name}\n".encode())
        self._launched = True
        return command

    def stop(self, reason: AttemptStatus) -> None:
        super().stop(reason)
        if self._run is not None and self._launched:
            # The supervisor signals what it started; a docker container is the daemon's child, not its.
            threading.Thread(target=stop_container, args=(self._run.cli, self._name, self._grace), daemon=True).start()

    def run(self, *args: Any, **kwargs: Any) -> Outcome:
        outcome: Outcome | None = None
        try:
            outcome = super().run(*args, **kwargs)
            return outcome
        finally:
            # The engine's client removes a container that ends (--rm), unless it was killed with
            # the model's supervisor: an attempt that was stopped or failed makes sure it is gone.
            ended_well = outcome is not None and outcome.status == AttemptStatus.SUCCEEDED
            if self._run is not None and self._launched and (self.stop_requested or not ended_well):
                remove_container(self._run.cli, self._name)

    def _outcome(self, exit_code: int, outputs_dir: Path, upload: UploadOutputs) -> Outcome:
        outcome = super()._outcome(exit_code, outputs_dir, upload)
        if outcome.status != AttemptStatus.FAILED or exit_code == 0 or self.stop_requested or self._run is None:
            return outcome
        if self.job.resources.memory is not None and self._out_of_memory(exit_code):
            return replace(
                outcome, error=f"the model ran out of memory: killed at its limit of {self.job.resources.memory}"
            )
        if exit_code == _ENGINE_FAILED:
            engine = Path(self._run.cli).name
            return replace(
                outcome, error=f"{engine} could not run image {self.job.image} (its message is in the attempt's log)"
            )
        return outcome

    @staticmethod
    def _out_of_memory(exit_code: int) -> bool:
        # A SIGKILL that nobody sent (the attempt was not stopped) to a model under a memory
        # limit is the kernel's out-of-memory killer (the container is gone: --rm).
        return exit_code in (_KILLED, -signal.SIGKILL)


class ContainerBackend(LocalBackend):
    """Runs image models as containers of this machine's podman or docker."""

    type: ClassVar[str] = "container"

    def __init__(
        self,
        name: str,
        spec: ContainerBackendSpec,
        config: LocalConfig,
        artifacts: ArtifactStore,
        logs: LogStore,
        wake: Any,
        data: DataCache | None = None,
    ) -> None:
        super().__init__(config, artifacts, logs, wake, data)
        self._name = name
        self._installation = hashlib.sha256(str(config.state_dir.resolve()).encode()).hexdigest()[:12]
        self._owner = _container_user(spec.user)
        try:
            cli: str | None = container_cli(spec.engine)
            self._problem: str | None = None
        except ContainerEngineMissing as exc:
            cli, self._problem = None, exc.message
        labels = {_INSTALLATION: self._installation, _RUNNER: this_runner_id(), "modelrunner.backend": name}
        ids = (self._owner.uid, self._owner.gid) if self._owner is not None else None
        self._run = ContainerRun(cli, spec.network, ids, labels) if cli is not None else None
        if self._run is not None:
            threading.Thread(target=self._remove_orphans, name="container-orphans", daemon=True).start()

    def health(self) -> str | None:
        return self._problem

    def _new_process(self, job: AttemptJob) -> AttemptProcess:
        return ContainerAttemptProcess(
            job,
            self._run,
            self._container_name(job.run_id, job.attempt_number),
            self._owner,
            model_folder=self._model_folder(job.snapshot_uri),
            scratch=self._scratch(job.run_id, job.attempt_number),
            checkpoint=checkpoints.local_folder(self._config.state_dir, job.run_id),
            log_path=self._logs.path(job.run_id, job.attempt_number),
            grace_seconds=self._config.grace_seconds,
            supervisors=self._supervisors,
            environment=self._environment,
            user=None,  # the engine runs as the server's user; the container as ``owner``
            data_folder=self._data.folder if self._data is not None else None,
            fetch_file=self._artifacts.get_file,
        )

    def _container_name(self, run_id: object, attempt: object) -> str:
        return f"modelrunner-{self._installation}-{run_id}-{attempt}"

    def _stop_orphan(self, handle: Handle) -> None:
        """Stop and remove the container a crashed server of this installation left for this attempt."""
        if self._run is not None:
            name = self._container_name(handle.get("run_id"), handle.get("attempt"))
            stop_container(self._run.cli, name, self._config.grace_seconds)
            remove_container(self._run.cli, name)

    def _remove_orphans(self) -> None:
        """Remove the containers of this installation whose server process has ended."""
        assert self._run is not None
        try:
            listed = call(
                self._run.cli, "ps", "--all", "--filter", f"label={_INSTALLATION}={self._installation}",
                "--format", "{{.Names}}",
            )  # fmt: skip
            for name in listed.stdout.split():
                owner = call(self._run.cli, "inspect", "--format", f'{{{{index .Config.Labels "{_RUNNER}"}}}}', name)
                if owner.returncode == 0 and is_dead_runner(owner.stdout.strip()):
                    log.info("removing container %s, left by a server of this installation that has ended", name)
                    stop_container(self._run.cli, name, self._config.grace_seconds)
                    remove_container(self._run.cli, name)
        except ModelrunnerError as exc:
            log.warning("could not look for containers left by an ended server: %s", exc.message)


def local_run_process(job: AttemptJob, **kwargs: Any) -> ContainerAttemptProcess:
    """An image model's attempt outside the platform (``modelrunner run --local``), as a container
    backend with its defaults runs it: the first engine installed, no network, an unprivileged user.
    ``kwargs`` are AttemptProcess's."""
    owner = _container_user(None)
    try:
        cli: str | None = container_cli(None)
    except ContainerEngineMissing:
        cli = None
    ids = (owner.uid, owner.gid) if owner is not None else None
    run = ContainerRun(cli, "none", ids, {"modelrunner.local-run": "true"}) if cli is not None else None
    return ContainerAttemptProcess(job, run, f"modelrunner-local-{uuid.uuid4().hex[:12]}", owner, **kwargs)


def stop_container(cli: str, name: str, grace: float) -> None:
    """SIGTERM to the container's processes, SIGKILL after ``grace`` seconds; nothing if it is gone."""
    try:
        call(cli, "stop", "--time", str(math.ceil(grace)), name, timeout=grace + 30)
    except ModelrunnerError as exc:
        log.warning("could not stop container %s: %s", name, exc.message)


def remove_container(cli: str, name: str) -> None:
    try:
        call(cli, "rm", "--force", name)
    except ModelrunnerError as exc:
        log.warning("could not remove container %s: %s", name, exc.message)


def _container_user(given: str | None) -> ModelUser | None:
    """The ids models run as inside their containers: ``given`` (uid[:gid]); else, for a server
    running as root, those of the platform's model user where it exists, else nobody's; None
    (the server's own user) for a server that is not root, which cannot give folders away."""
    if given is not None:
        uid, _, gid = given.partition(":")
        return ModelUser(given, int(uid), int(gid or uid), "/")
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(DEFAULT_MODEL_USER)
        return ModelUser(entry.pw_name, entry.pw_uid, entry.pw_gid, "/")
    except KeyError:
        return ModelUser("nobody", _NOBODY, _NOBODY, "/")
