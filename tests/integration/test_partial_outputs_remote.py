"""Partial outputs of an attempt on a remote worker (``modelrunner worker``, which reaches the
server over HTTP only): uploaded through the attempt's file route as outputs are, so the
server's upload limit holds for them too. A file over it is refused, named in the run's log, and
costs only itself; the attempt keeps the rest, and the run still ends as its model did."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import Server
from tests.integration.runs_api import write_model
from tests.integration.test_worker_pool import Workers, final, submit

LIMIT = 2048
OVERFLOW = """\
title: Writes a small file and one over the upload limit, then fails
command: ["python", "overflow.py"]
"""
OVERFLOW_PY = f"""\
import os, sys
from pathlib import Path
out = Path(os.environ["MODELRUNNER_OUTPUTS"])
(out / "big.bin").write_bytes(b"x" * {LIMIT * 4})
(out / "small.txt").write_text("kept on the worker\\n")
os.symlink("/etc/passwd", out / "passwd")
sys.exit(2)
"""


@pytest.fixture
def workspace(workspace: Path) -> Path:
    spec = yaml.safe_load((workspace / "modelrunner.yaml").read_text())
    spec.update(backends={"pool": {"type": "worker"}}, default_backend="pool")
    (workspace / "modelrunner.yaml").write_text(yaml.safe_dump(spec))
    write_model(workspace, "overflow", OVERFLOW, {"overflow.py": OVERFLOW_PY})
    return workspace


@pytest.fixture
def server_env(server_env: dict[str, str]) -> dict[str, str]:
    return {**server_env, "MODELRUNNER_MAX_UPLOAD_BYTES": str(LIMIT)}


@pytest.fixture
def api(server: Server, tmp_path: Path) -> Iterator[httpx.Client]:
    workers = Workers(server, tmp_path)
    workers.start()
    try:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as client:
            yield client
    finally:
        workers.stop()


def test_a_workers_partial_outputs_keep_the_upload_limit(api: httpx.Client) -> None:
    run = final(api, submit(api, "overflow", {}), timeout=60)
    assert run["status"] == "failed"
    assert run["error"] == "the model ended with exit status 2"
    assert run["outputs"] == []
    (attempt,) = run["attempts"]
    assert [f["path"] for f in attempt["partial_outputs"]] == ["small.txt"]
    assert api.get(attempt["partial_outputs"][0]["url"]).text == "kept on the worker\n"
    log = api.get(f"/api/v1/runs/{run['id']}/logs").text
    assert "partial output passwd is not stored: it is a symbolic link (to /etc/passwd)" in log
    assert "partial output big.bin is not stored" in log and "max_upload_bytes" in log
    assert api.get(f"/api/v1/runs/{run['id']}/attempts/1/outputs/big.bin").status_code == 404
