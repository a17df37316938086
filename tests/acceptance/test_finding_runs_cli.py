"""Finding runs with the real CLI against a real server: ``runs list --since/--until`` and
``runs logs`` of a pipeline run (the failing step's log, or each step's under a header)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.acceptance.test_cli import cli, ok, wait_until
from tests.conftest import FINAL, TESTS, Server


@pytest.fixture
def workspace(workspace: Path) -> Path:
    shutil.copytree(TESTS / "pipeline_model", workspace / "regional")
    return workspace


def submitted(*args: str, env: dict[str, str]) -> int:
    return int(json.loads(ok("run", "regional", *args, "--json", env=env))["id"])


def test_runs_list_since_and_the_logs_of_a_pipeline(server: Server) -> None:
    env = server.env
    failed_id = submitted("-p", 'regions=["uk","fr"]', "-p", "fail_region=fr", env=env)
    assert wait_until(server, failed_id, FINAL)["status"] == "failed"

    logs = ok("runs", "logs", str(failed_id), env=env)

    # Only the failing step's log, under a header naming it; the hint says how to see every step.
    assert "==> step estimate[fr]" in logs and "failed) <==" in logs
    assert "no data for fr" in logs
    assert "estimate[uk]" not in logs
    every = ok("runs", "logs", str(failed_id), "--all-steps", env=env)
    assert "==> step estimate[uk]" in every and "==> step estimate[fr]" in every

    good_id = submitted("-p", 'regions=["uk"]', env=env)
    assert wait_until(server, good_id, FINAL)["status"] == "succeeded"
    steps = ok("runs", "logs", str(good_id), env=env)
    assert [line.split(" (run")[0] for line in steps.splitlines() if line.startswith("==> ")] == [
        "==> step estimate[uk]",
        "==> step check",
        "==> step summarise",
        "==> step publish",
    ]

    listed = json.loads(ok("runs", "list", "--since", "1d", "--status", "failed", "--json", env=env))
    assert [run["id"] for run in listed] == [failed_id]
    assert json.loads(ok("runs", "list", "--until", "1d", "--json", env=env)) == []
    assert "no runs match these filters" in cli("runs", "list", "--until", "1d", env=env).stderr
    wrong = cli("runs", "list", "--since", "yesterday", env=env)
    assert wrong.returncode == 1
    assert "since: 'yesterday' is neither a duration" in wrong.stderr
