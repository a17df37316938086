"""Outputs are regular files inside the outputs folder. A model that leaves a symbolic link to
/etc/hostname, a hard link to a file outside the folder, a FIFO or a link to a folder there gets
none of them stored: the run's log names each, and the run fails when a declared output is one.

Run end to end on the local backend, and through ``modelrunner exec`` (every other backend)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from modelrunner.artifacts.store import ArtifactStore
from modelrunner.execution.job import AttemptJob
from modelrunner.execution.remote import RemoteJob
from modelrunner.platform import Platform
from modelrunner.spec.model_version import snapshot
from tests.conftest import Server, wait_for_run
from tests.integration.runs_api import write_model
from tests.integration.test_worker_pool import Workers, final

SNEAKY_PY = """import os
from pathlib import Path
out = Path(os.environ["MODELRUNNER_OUTPUTS"])
(out / "result.txt").write_text("a regular file")
os.symlink("/etc/hostname", out / "link.txt")
Path("outside.txt").write_text("a file of the model's folder, outside its outputs")
os.link("outside.txt", out / "hard.txt")
os.mkfifo(out / "pipe")
os.symlink("/etc", out / "etc")
(out / "twins").mkdir()
(out / "twins" / "a.txt").write_text("two names inside the folder")
os.link(out / "twins" / "a.txt", out / "twins" / "b.txt")
"""
# What the log says of each, and why.
REFUSED = {
    "link.txt": "a symbolic link (to /etc/hostname)",
    "hard.txt": "a hard link to a file outside the folder",
    "pipe": "a FIFO (named pipe)",
    "etc": "a symbolic link (to /etc)",
}
STORED = ["result.txt", "twins/a.txt", "twins/b.txt"]
DECLARED = {"link": "link.txt", "hard": "hard.txt", "pipe": "pipe", "below_a_link": "etc/hostname"}


def sneaky_spec(declared: str) -> str:
    return f'command: ["python", "sneaky.py"]\noutputs:\n  - path: {declared}\n'


@pytest.fixture
def workspace(workspace: Path) -> Path:
    """The sneaky models on the local backend, and two more on a worker pool."""
    config = workspace / "modelrunner.yaml"
    spec = yaml.safe_load(config.read_text())
    spec.update(backends={"local": {"type": "local"}, "pool": {"type": "worker"}}, default_backend="local")
    config.write_text(yaml.safe_dump(spec))
    write_model(workspace, "sneaky", sneaky_spec("result.txt"), {"sneaky.py": SNEAKY_PY})
    for name, declared in DECLARED.items():
        write_model(workspace, f"sneaky_{name}", sneaky_spec(declared), {"sneaky.py": SNEAKY_PY})
    for name, declared in (("pooled", "result.txt"), ("pooled_link", "link.txt")):
        write_model(workspace, name, f"backend: pool\n{sneaky_spec(declared)}", {"sneaky.py": SNEAKY_PY})
    return workspace


def log_of(client: TestClient, run_id: int) -> str:
    return client.get(f"/api/v1/runs/{run_id}/logs").text


def stored_files(artifacts: ArtifactStore, run_id: int) -> list[str]:
    prefix = f"runs/{run_id}/attempts/1/outputs"
    return [key.removeprefix(f"{prefix}/") for key in artifacts.keys(prefix)]


def test_only_regular_files_are_stored_and_the_log_names_the_rest(client: TestClient, platform: Platform) -> None:
    run = client.post("/api/v1/models/sneaky/runs", json={"params": {}}).json()
    done = wait_for_run(client.get, run["id"])
    assert done["status"] == "succeeded", done
    assert sorted(o["path"] for o in done["outputs"]) == STORED
    assert stored_files(platform.artifacts, run["id"]) == STORED
    log = log_of(client, run["id"])
    for path, reason in REFUSED.items():
        assert f"output {path} is not stored: it is {reason}" in log, log


@pytest.mark.parametrize("variant", sorted(DECLARED))
def test_a_declared_output_that_is_not_a_regular_file_fails_the_run(client: TestClient, variant: str) -> None:
    run = client.post(f"/api/v1/models/sneaky_{variant}/runs", json={"params": {}}).json()
    done = wait_for_run(client.get, run["id"])
    assert done["status"] == "failed", done
    declared = DECLARED[variant]
    error = done["error"]
    assert "declared outputs are not regular files inside the outputs folder" in error and declared in error, error
    assert done["outputs"] == []
    assert "is not stored" in log_of(client, run["id"])


def exec_sneaky(tmp_path: Path, store: ArtifactStore, declared: str) -> dict[str, object]:
    folder = tmp_path / "sneaky"
    folder.mkdir(exist_ok=True)
    (folder / "model.yaml").write_text(f"name: sneaky\n{sneaky_spec(declared)}")
    (folder / "sneaky.py").write_text(SNEAKY_PY)
    job = AttemptJob(
        run_id=5,
        attempt_id=9,
        attempt_number=1,
        model_name="sneaky",
        model_version="v1",
        command=["python", "sneaky.py"],
        params={},
        snapshot_uri=store.put_bytes("models/sneaky/v1.tar.gz", snapshot(folder)),
        declared_outputs=(declared,),
    )
    job_file = tmp_path / "job.json"
    job_file.write_text(RemoteJob(job, store.url, grace_seconds=1).to_json(), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELRUNNER_")}
    done = subprocess.run(
        [sys.executable, "-m", "modelrunner", "exec", "--job", str(job_file)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    outcome: dict[str, object] = json.loads(done.stdout)
    return outcome


@pytest.mark.parametrize(("declared", "status"), [("result.txt", "succeeded"), ("link.txt", "failed")])
def test_modelrunner_exec_stores_only_regular_files(tmp_path: Path, declared: str, status: str) -> None:
    store = ArtifactStore(str(tmp_path / "artifacts"))
    outcome = exec_sneaky(tmp_path, store, declared)
    assert outcome["status"] == status, outcome
    stored = stored_files(store, 5)
    assert not set(stored) & set(REFUSED), stored
    if status == "succeeded":
        assert sorted(o["path"] for o in outcome["outputs"]) == STORED  # type: ignore[attr-defined]
    else:
        assert declared in str(outcome["error"])
    log = store.get_bytes(store.uri("runs/5/attempts/1/attempt.log")).decode()
    for path, reason in REFUSED.items():
        assert f"output {path} is not stored: it is {reason}" in log, log


def test_a_worker_stores_only_regular_files(server: Server, tmp_path: Path) -> None:
    """``modelrunner worker`` uploads through the server, file by file, with the same rules."""
    workers = Workers(server, tmp_path)
    workers.start()
    try:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as api:
            runs = {
                name: api.post(f"/api/v1/models/{name}/runs", json={"params": {}}).json()["id"]
                for name in ("pooled", "pooled_link")
            }
            done = {name: final(api, run_id, timeout=60) for name, run_id in runs.items()}
            logs = {name: api.get(f"/api/v1/runs/{run_id}/logs").text for name, run_id in runs.items()}
    finally:
        workers.stop()
    assert done["pooled"]["status"] == "succeeded", done["pooled"]
    assert sorted(o["path"] for o in done["pooled"]["outputs"]) == STORED
    assert done["pooled_link"]["status"] == "failed" and "link.txt" in done["pooled_link"]["error"]
    assert done["pooled_link"]["outputs"] == []
    for log in logs.values():
        for path, reason in REFUSED.items():
            assert f"output {path} is not stored: it is {reason}" in log, log
