"""examples/scenarios as its README walks through it, against a real server and the real CLI: a
planner puts the base scenario, an analyst is refused base/ and adds a scenario, and the model runs
on each scenario and with an uploaded file of closures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelrunner.settings import Settings
from tests.conftest import REPO, empty_database, wait_for_run
from tests.identities import add_user
from tests.integration.served import Served

EXAMPLE = REPO / "examples" / "scenarios"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    workspace = tmp_path / "scenarios"
    shutil.copytree(EXAMPLE, workspace)
    with empty_database(tmp_path / "state") as url:
        started = Served(Settings(workspace=workspace, data_dir=tmp_path / "state", database_url=url, poll_seconds=0.2))
        try:
            yield started
        finally:
            started.stop()


def test_the_scenarios_walk_through(served: Served, tmp_path: Path) -> None:
    workspace = served.platform.settings.workspace
    database = served.platform.database
    tokens = {
        "pia": add_user(database, "pia", groups=["planners", "analysts"]),
        "ali": add_user(database, "ali", groups=["analysts"]),
    }

    def cli(who: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "MODELRUNNER_SERVER": served.url, "MODELRUNNER_TOKEN": tokens[who]}
        done = subprocess.run(
            [sys.executable, "-m", "modelrunner", *args], env=env, cwd=workspace, capture_output=True, text=True
        )
        assert "Traceback" not in done.stdout + done.stderr, done.stderr
        return done

    assert cli("pia", "data", "put", "paris", "data/base", "-m", "the base network and demand").returncode == 0
    refused = cli("ali", "data", "put", "paris", "data/base", "-m", "mine now")
    assert refused.returncode == 1 and "write rule 'base/**'" in refused.stderr, refused.stderr
    assert cli("ali", "data", "put", "paris", "data/more-lanes", "-m", "A4 with three lanes").returncode == 0

    def load(*params: str) -> dict[str, Any]:
        submitted = cli("ali", "run", "assignment", *[a for p in params for a in ("-p", p)], "--json")
        assert submitted.returncode == 0, submitted.stderr
        run = wait_for_run(served.http.get, json.loads(submitted.stdout)["id"])
        assert run["status"] == "succeeded", run
        result: dict[str, Any] = served.http.get(f"/api/v1/runs/{run['id']}/outputs/load.json").json()
        return result

    base = load("scenario=base")
    assert base == {
        "scenario": "base",
        "links_open": 3,
        "links_closed": 0,
        "trips": 4000.0,
        "capacity": 4800.0,
        "load": 0.8333,
    }
    assert load("scenario=more-lanes")["load"] == round(4000 / 6600, 4)
    closed = load("scenario=base", "closures=@closures.txt")
    assert closed["links_closed"] == 1 and closed["capacity"] == 3000.0
    unknown = cli("ali", "run", "assignment", "-p", "scenario=lyon")
    assert unknown.returncode == 1 and "no folder 'lyon'" in unknown.stderr and "more-lanes" in unknown.stderr
