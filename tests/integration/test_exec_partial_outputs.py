"""Partial outputs away from the server: ``modelrunner exec`` (what the Slurm, Kubernetes, AWS and
Azure backends launch) stores what a failed model wrote under its attempt's outputs and names it
in the outcome it leaves, which is how those backends read how an attempt ended. A real ``exec``
process and a real artifact store folder."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelrunner.artifacts.logs import LogStore
from modelrunner.artifacts.store import ArtifactStore
from modelrunner.backends.exec_attempts import Attempts
from modelrunner.engine.states import AttemptStatus
from modelrunner.execution.job import AttemptJob
from modelrunner.execution.remote import RemoteJob, outcome_key
from modelrunner.spec.model_version import snapshot

pytestmark = pytest.mark.store_free

NOTES = b"half of the fit\n"
FAILS = f"""import os, sys
from pathlib import Path
out = Path(os.environ["MODELRUNNER_OUTPUTS"])
(out / "notes.txt").write_bytes({NOTES!r})
os.symlink("/etc/hostname", out / "hostname")
sys.exit(5)
"""


def test_exec_leaves_a_failed_models_partial_outputs_in_its_outcome(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "artifacts"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "fails.py").write_text(FAILS)
    job = AttemptJob(
        run_id=4,
        attempt_id=40,
        attempt_number=1,
        model_name="fails",
        model_version="v1",
        command=["python", "fails.py"],
        params={},
        snapshot_uri=store.put_bytes("models/fails/v1.tar.gz", snapshot(model)),
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELRUNNER_")}
    env["MODELRUNNER_JOB"] = RemoteJob(job, store.url, grace_seconds=2).to_json()
    done = subprocess.run([sys.executable, "-m", "modelrunner", "exec"], env=env, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr  # exec reports the model's failure in its outcome

    left = json.loads(store.get_bytes(store.uri(outcome_key(4, 1))))
    assert left["status"] == "failed" and left["outputs"] == []
    (notes,) = left["partial_outputs"]
    assert notes["path"] == "notes.txt" and notes["sha256"] == hashlib.sha256(NOTES).hexdigest()
    assert store.get_bytes(notes["uri"]) == NOTES
    assert notes["uri"] == store.uri("runs/4/attempts/1/outputs/notes.txt")

    # The backend's reading of the ending carries them to the engine.
    attempts = Attempts(store, LogStore(tmp_path / "logs"))
    handle = {"attempt_id": 40, "run_id": 4, "attempt": 1}
    ending = attempts.ending(handle, None, 5, interrupted=None, what="job")
    assert ending.status == AttemptStatus.FAILED
    assert [f.path for f in ending.partial_outputs] == ["notes.txt"]
    log = store.get_bytes(store.uri("runs/4/attempts/1/attempt.log")).decode()
    assert "partial output hostname is not stored: it is a symbolic link" in log
