"""A server killed with SIGKILL in the middle of a pipeline and started again resumes it where it
stood: finished steps are not run again, the rest runs, and the pipeline ends succeeded."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import httpx
import pytest

from modelrunner.settings import Settings
from tests.conftest import TESTS, Server, wait_for_run
from tests.integration.runs_api import wait_until


@pytest.fixture
def settings(settings: Settings) -> Settings:
    shutil.copytree(TESTS / "pipeline_model", settings.workspace / "regional")
    return settings


def test_sigkill_mid_pipeline_and_restart_resumes_it(server: Server, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.txt"
    params = {"ledger": str(ledger), "sleep": 1.0, "regions": ["a", "b", "c", "d", "e", "f"]}
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
        pipeline = http.post("/api/v1/models/regional/runs", json={"params": params}).json()

        def some_estimates_done() -> bool:
            run = http.get(f"/api/v1/runs/{pipeline['id']}").json()
            estimate = next(s for s in run["steps"] if s["name"] == "estimate")
            return estimate["counts"].get("succeeded", 0) >= 2

        wait_until(some_estimates_done, 30, "two estimates to succeed")
        done_before = {
            c["id"]: f"{c['step']}:{c['item_key']}" if c["item_key"] else c["step"]
            for c in http.get("/api/v1/runs", params={"parent": pipeline["id"], "limit": 100}).json()["items"]
            if c["status"] == "succeeded"
        }
        server.kill()
        server.start()
        run = wait_for_run(http.get, pipeline["id"], timeout=90)
        children = http.get("/api/v1/runs", params={"parent": pipeline["id"], "limit": 100}).json()["items"]

    assert run["status"] == "succeeded", run["error"]
    assert len(children) == 6 + 3
    assert all(c["status"] == "succeeded" for c in children)
    assert set(done_before) <= {c["id"] for c in children}
    executed = Counter(ledger.read_text().split())
    # What had succeeded before the kill never ran again; what was in flight ran again at most once.
    assert all(executed[name] == 1 for name in done_before.values()), executed
    assert executed["summarise"] == 1 and executed["publish"] == 1
    assert all(count <= 2 for count in executed.values()), executed
