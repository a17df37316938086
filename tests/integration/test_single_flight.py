"""Single-flight: identical requests that arrive together share one execution."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from modelrunner.engine.submit import SubmitOutcome
from modelrunner.platform import Platform
from tests.conftest import Server, wait_for_run

CALLERS = 30


def _together(callers: int, call: Any) -> list[Any]:
    """Run ``call`` in ``callers`` threads released at the same instant."""
    barrier = threading.Barrier(callers)

    def one(_: int) -> Any:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(callers) as pool:
        return list(pool.map(one, range(callers)))


def test_30_concurrent_http_submissions_execute_once(server: Server, tmp_path: Path) -> None:
    counter = tmp_path / "executions.txt"
    body = {"params": {"seconds": 0.5, "counter": str(counter)}}
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
        responses = _together(CALLERS, lambda: http.post("/api/v1/models/sleeper/runs", json=body))
        assert {r.status_code for r in responses} == {201}
        run_ids = {r.json()["id"] for r in responses}
        assert len(run_ids) == 1, f"callers got different runs: {run_ids}"
        assert sorted(r.json()["submission"] for r in responses).count("created") == 1
        run = wait_for_run(http.get, run_ids.pop())
        assert run["status"] == "succeeded"
        # Latecomers are answered from the cache with the very same outputs.
        late = http.post("/api/v1/models/sleeper/runs", json=body).json()
    assert late["submission"] == "cache_hit" and late["source_run_id"] == run["id"]
    assert [o["sha256"] for o in late["outputs"]] == [o["sha256"] for o in run["outputs"]]
    assert counter.read_text().count("\n") == 1, "the model ran more than once"


def test_30_concurrent_engine_submissions_share_one_run(platform: Platform, tmp_path: Path) -> None:
    """The same race without HTTP in between: each caller has its own database transaction."""
    platform.start()
    try:
        counter = tmp_path / "executions.txt"
        params = {"seconds": 0.2, "counter": str(counter)}
        submissions = _together(CALLERS, lambda: platform.submit("sleeper", params))
        assert len({s.run.id for s in submissions}) == 1
        outcomes = [s.outcome for s in submissions]
        assert outcomes.count(SubmitOutcome.CREATED) == 1
        assert outcomes.count(SubmitOutcome.JOINED) == CALLERS - 1
    finally:
        platform.stop()
