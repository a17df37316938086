"""``modelrunner schedules`` and ``modelrunner triggers`` as a user meets them: the real CLI as a
subprocess against a real ``modelrunner serve``."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.acceptance.test_cli import cli, ok, wait_until
from tests.conftest import TESTS, Server


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """The test workspace; noop has a yearly schedule in Paris time, sleeper a trigger on noop."""
    root = tmp_path / "workspace"
    shutil.copytree(TESTS / "workspace", root, ignore=shutil.ignore_patterns("__pycache__", "broken"))
    for model, extra in (
        ("noop", {"schedules": [{"name": "yearly", "cron": "0 3 1 1 *", "timezone": "Europe/Paris"}]}),
        (
            "sleeper",
            {"triggers": [{"name": "after-noop", "on": "run.succeeded", "model": "noop", "enabled": False}]},
        ),
    ):
        path = root / model / "model.yaml"
        path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **extra}, sort_keys=False))
    return root


def test_schedules_are_listed_and_fired_now_from_the_command_line(server: Server) -> None:
    listed = ok("schedules", "list", env=server.env)
    assert "noop/yearly" in listed and "0 3 1 1 *" in listed and "Europe/Paris" in listed
    assert re.search(r"\d{4}-01-01 03:00 CET", listed) and re.search(r"\d{4}-01-01 02:00 UTC", listed)
    assert "never" in listed  # no firing yet

    fired = ok("schedules", "run", "noop/yearly", env=server.env)

    match = re.search(r"firing (\d+) of noop/yearly: submitted, run (\d+)", fired)
    assert match, fired
    assert wait_until(server, int(match.group(2)), {"succeeded", "failed"})["status"] == "succeeded"
    firings = ok("schedules", "firings", "yearly", env=server.env)
    assert match.group(1) in firings and "manual:" in firings and "submitted" in firings
    [schedule] = json.loads(ok("schedules", "list", "--json", env=server.env))
    assert schedule["last_firing"]["run_ids"] == [int(match.group(2))]

    unknown = cli("schedules", "run", "nope", env=server.env)
    assert unknown.returncode == 1
    assert "error: unknown schedule 'nope'" in unknown.stderr


def test_triggers_are_listed_with_why_they_do_not_fire(server: Server) -> None:
    listed = cli("triggers", "list", env=server.env)

    assert listed.returncode == 0, listed.stderr
    assert "sleeper/after-noop" in listed.stdout and "run.succeeded" in listed.stdout
    assert "sleeper/after-noop does not fire: enabled: false" in listed.stderr
