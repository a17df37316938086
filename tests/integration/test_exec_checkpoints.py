"""Checkpoints travel between machines: an attempt of ``modelrunner exec`` stopped by SIGTERM (a
spot interruption's notice) stores what the model left in MODELRUNNER_CHECKPOINT, and the run's
next attempt, wherever it runs, starts with it. Real ``modelrunner exec`` processes, a real
artifact store folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from modelrunner.artifacts.store import ArtifactStore
from modelrunner.execution.job import AttemptJob
from modelrunner.execution.remote import RemoteJob
from modelrunner.spec.model_version import snapshot
from tests.integration.runs_api import wait_until

# Counts to 30, a step at a time, keeping the next step in its checkpoint; on SIGTERM it stops
# after the step in hand, as a well-behaved model does when told its machine goes away.
RESUMER = """import os, pathlib, signal, sys, time
from modelrunner import job

checkpoint = pathlib.Path(os.environ["MODELRUNNER_CHECKPOINT"]) / "next_step"
first = int(checkpoint.read_text()) if checkpoint.exists() else 0
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
for step in range(first, 30):
    if stopping:
        sys.exit(143)
    time.sleep(0.2 if first == 0 else 0.01)
    checkpoint.write_text(str(step + 1))
    job.progress((step + 1) / 30, f"step {step + 1}")
    with open(job.params()["steps"], "a") as steps:
        steps.write(f"{step + 1}\\n")
(job.outputs() / "resumed.txt").write_text(f"began at step {first}\\n")
"""


def resumer_job(store: ArtifactStore, folder: Path, attempt_number: int) -> AttemptJob:
    """An attempt of run 9 of the resumer; it notes each step it ends in ``<folder>/steps``."""
    folder.mkdir(exist_ok=True)
    (folder / "resume.py").write_text(RESUMER)
    uri = store.put_bytes("models/resumer/v1.tar.gz", snapshot(folder))
    return AttemptJob(
        run_id=9,
        attempt_id=100 + attempt_number,
        attempt_number=attempt_number,
        model_name="resumer",
        model_version="v1",
        command=["python", "resume.py"],
        params={"steps": str(folder / "steps")},
        snapshot_uri=uri,
        declared_outputs=("resumed.txt",),
    )


def exec_env(job: AttemptJob, store: ArtifactStore) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELRUNNER_")}
    env["MODELRUNNER_JOB"] = RemoteJob(job, store.url, grace_seconds=5).to_json()
    return env


def test_a_preempted_attempt_s_checkpoint_starts_the_next_attempt(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "artifacts"))
    first = resumer_job(store, tmp_path / "model", 1)
    process = subprocess.Popen(
        [sys.executable, "-m", "modelrunner", "exec"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=exec_env(first, store),
    )
    log = store.uri("runs/9/attempts/1/attempt.log")
    # Let it take a few steps, then take its machine away.
    steps = tmp_path / "model" / "steps"
    wait_until(lambda: steps.exists() and len(steps.read_text().split()) >= 3, 20, "a few steps")
    process.terminate()
    stdout, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert json.loads(stdout)["status"] == "preempted"
    kept = int(store.get_bytes(store.uri("runs/9/attempts/1/checkpoint/next_step")))
    assert 1 <= kept < 30
    assert b"step" in store.get_bytes(log)

    second = resumer_job(store, tmp_path / "model", 2)
    done = subprocess.run(
        [sys.executable, "-m", "modelrunner", "exec"],
        capture_output=True,
        text=True,
        env=exec_env(second, store),
        timeout=60,
    )
    outcome = json.loads(done.stdout)
    assert outcome["status"] == "succeeded", done.stderr
    [output] = outcome["outputs"]
    assert store.get_bytes(output["uri"]) == f"began at step {kept}\n".encode()
    said = store.get_bytes(store.uri("runs/9/attempts/2/attempt.log")).decode()
    assert "MODELRUNNER_CHECKPOINT holds what attempt 1 left" in said


def test_a_checkpoint_cut_short_is_not_used(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "artifacts"))
    # The files of attempt 1's checkpoint, but not the marker written after the last of them.
    store.put_bytes("runs/9/attempts/1/checkpoint/next_step", b"29")
    second = resumer_job(store, tmp_path / "model", 2)
    done = subprocess.run(
        [sys.executable, "-m", "modelrunner", "exec"],
        capture_output=True,
        text=True,
        env=exec_env(second, store),
        timeout=60,
    )
    outcome = json.loads(done.stdout)
    assert outcome["status"] == "succeeded", done.stderr
    assert store.get_bytes(outcome["outputs"][0]["uri"]) == b"began at step 0\n"
