"""The command line tells a step left out on purpose (skipped, with its reason) from one held up by
a failure (blocked), and shows how a step needs the others."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from modelrunner.settings import Settings
from tests.acceptance.test_cli import ok
from tests.conftest import TESTS, Server, wait_for_run


@pytest.fixture
def settings(settings: Settings) -> Settings:
    shutil.copytree(TESTS / "chain_model", settings.workspace / "corpora")
    return settings


def test_runs_show_tells_skipped_from_blocked_and_models_show_the_needs(server: Server, tmp_path: Path) -> None:
    env = {**server.env, "COLUMNS": "200"}
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
        submitted = http.post("/api/v1/models/corpora/runs", json={"params": {"fail": "beta"}}).json()
        run = wait_for_run(http.get, submitted["id"])
    assert run["status"] == "failed"

    shown = ok("runs", "show", str(run["id"]), env=env)

    rows = {line.split()[0]: line for line in shown.splitlines() if line.split() and line.split()[0] in STEPS}
    assert "blocked" in rows["test_stats"] and "not run for beta" in rows["test_stats"]
    assert "blocked" in rows["summary"] and "it needs 'test_stats', which did not succeed" in rows["summary"]
    assert "skipped" in rows["daily_update"] and "when: params.run_daily_update is false" in rows["daily_update"]
    assert "skipped" in rows["publish_update"] and "it needs 'daily_update', which is skipped" in rows["publish_update"]

    model = ok("models", "show", "corpora", env=env)
    assert "tests (item by item)" in model
    assert "test_stats, daily_update (if it runs)" in model
    assert "params.run_daily_update" in model


STEPS = {"tests", "test_stats", "daily_update", "publish_update", "summary"}
