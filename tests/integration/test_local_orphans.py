"""A restarted server stops the model processes its crashed predecessor left for an attempt, and
only those: another installation on the same machine numbers its runs from 1 too."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from modelrunner.artifacts.logs import LogStore
from modelrunner.artifacts.store import ArtifactStore
from modelrunner.backends.local import LocalBackend, LocalConfig
from modelrunner.engine.runner_identity import HOST
from modelrunner.engine.states import AttemptStatus

pytestmark = pytest.mark.store_free


def _backend(state_dir: Path) -> LocalBackend:
    config = LocalConfig(slots=1, grace_seconds=1, state_dir=state_dir)
    return LocalBackend(config, ArtifactStore(str(state_dir / "artifacts")), LogStore(state_dir / "logs"), lambda: None)


def _model_left_by(state_dir: Path, run_id: int, attempt: int) -> psutil.Process:
    """A model process as a killed server leaves it: no child of this process, in a session of its
    own, under the contract."""
    environment = {
        **os.environ,
        "MODELRUNNER_RUN_ID": str(run_id),
        "MODELRUNNER_ATTEMPT": str(attempt),
        "MODELRUNNER_OUTPUTS": str(state_dir / "scratch" / f"{run_id}-{attempt}" / "outputs"),
    }
    leave = (
        "import subprocess, sys; "
        "print(subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True, "
        "stdout=subprocess.DEVNULL).pid)"
    )
    pid = subprocess.run([sys.executable, "-c", leave], env=environment, stdout=subprocess.PIPE, check=True).stdout
    return psutil.Process(int(pid))


def _ended(process: psutil.Process) -> bool:
    try:
        process.wait(timeout=10)
    except psutil.TimeoutExpired:
        return False
    return True


def test_a_pidless_orphan_is_stopped_in_its_own_installation_only(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    backend = _backend(ours)
    orphan = _model_left_by(ours, run_id=1, attempt=1)
    neighbour = _model_left_by(theirs, run_id=1, attempt=1)  # the same run and attempt numbers
    try:
        # The crashed server launched the attempt but never recorded its pid.
        backend.cancel({"host": HOST, "attempt_id": 7, "run_id": 1, "attempt": 1}, AttemptStatus.LOST)
        assert _ended(orphan)
        assert neighbour.is_running(), "another installation's model was stopped"
    finally:
        for process in (orphan, neighbour):
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        backend.close()


def test_an_orphan_with_a_recorded_pid_is_stopped_with_its_group(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    orphan = _model_left_by(tmp_path, run_id=3, attempt=2)
    handle = {"host": HOST, "attempt_id": 9, "run_id": 3, "attempt": 2, "pid": orphan.pid}
    handle["created"] = orphan.create_time()
    try:
        backend.cancel(handle, AttemptStatus.LOST)
        assert _ended(orphan)
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            orphan.kill()
        backend.close()
