"""The ``examples/casecounts`` walk-through as its README tells a user to follow it: create the data
repository, sync the dataset, run the projection, get a cache hit, let new data arrive, pin an old
data version. Plus the model on its own, run under the model contract by hand."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO, Server

EXAMPLE = REPO / "examples" / "casecounts"
REGIONS = {"north", "central", "south"}
HISTORY_DAYS = 60
DATA_VERSIONS = 5  # commits of case-data/ that change cases.csv (a sixth only edits README.md)
# The newest data version as the example's README shows it (and pins with `-i cases=d8d9`); change
# the README too if setup_data.py changes the data.
README_NEWEST = "d8d927ea43db"


def copy_example(destination: Path) -> Path:
    """A private copy of the example, without the data or state a developer's own use left in it."""
    shutil.copytree(EXAMPLE, destination, ignore=shutil.ignore_patterns("case-data", ".modelrunner", "__pycache__"))
    return destination


def setup_data(workspace: Path, *flags: str) -> str:
    """Run ``python setup_data.py FLAGS`` from another folder, as the README does; its stdout."""
    done = subprocess.run(
        [sys.executable, str(workspace / "setup_data.py"), *flags],
        cwd=workspace.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """Overrides the conftest fixture: the example workspace with its data repository created, so that
    ``settings``, ``server_env`` and ``server`` serve it."""
    copied = copy_example(tmp_path / "casecounts")
    setup_data(copied)
    return copied


def git(repo: Path, *args: str) -> str:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    return subprocess.run(
        ["git", "-C", str(repo), *args], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def run_model(workspace: Path, folder: Path, params: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """Run projection.py under the model contract with the repository's cases.csv as its input."""
    inputs, outputs = folder / "inputs", folder / "outputs"
    (inputs / "cases").mkdir(parents=True)
    outputs.mkdir()
    shutil.copy(workspace / "case-data" / "cases.csv", inputs / "cases" / "cases.csv")
    (folder / "params.json").write_text(json.dumps(params))
    env = {key: value for key, value in os.environ.items() if not key.startswith("MODELRUNNER_")}
    env.update(
        MODELRUNNER_PARAMS=str(folder / "params.json"),
        MODELRUNNER_INPUTS=str(inputs),
        MODELRUNNER_OUTPUTS=str(outputs),
    )
    return subprocess.run(
        [sys.executable, "projection.py"],
        cwd=workspace / "projection",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def check_outputs(outputs: Path, regions: set[str], horizon: int) -> dict[str, Any]:
    """The projection has ``horizon`` projected days per region, with sane bounds; the summary
    numbers are finite. Returns the summary."""
    rows = read_csv(outputs / "projection.csv")
    projected = [row for row in rows if row["kind"] == "projected"]
    assert {row["region"] for row in projected} == regions
    for region in regions:
        assert sum(row["region"] == region for row in projected) == horizon
    for row in projected:
        assert 0 <= float(row["lower"]) <= float(row["cases"]) <= float(row["upper"])
    assert {row["kind"] for row in rows} == {"observed", "projected"}

    summary: dict[str, Any] = json.loads((outputs / "summary.json").read_text())
    assert set(summary["regions"]) == regions
    for figures in summary["regions"].values():
        rate = figures["growth_rate_per_day"]
        low, high = figures["growth_rate_interval"]
        assert math.isfinite(rate) and low <= rate <= high
        # Exactly one of doubling and halving time applies, and it is a finite number of days.
        (time,) = [t for t in (figures["doubling_time_days"], figures["halving_time_days"]) if t is not None]
        assert math.isfinite(time) and time > 0
        assert all(
            math.isfinite(value) for value in figures["projected_last_day"].values() if not isinstance(value, str)
        )
    return summary


def test_setup_data_is_deterministic_and_the_model_projects_it(tmp_path: Path) -> None:
    workspace = copy_example(tmp_path / "casecounts")
    setup_data(workspace)
    repo = workspace / "case-data"
    assert len(git(repo, "log", "--format=%H").splitlines()) == DATA_VERSIONS + 1
    assert len(git(repo, "log", "--format=%H", "--", "cases.csv").splitlines()) == DATA_VERSIONS
    rows = read_csv(repo / "cases.csv")
    assert len(rows) == HISTORY_DAYS * len(REGIONS)
    assert {row["region"] for row in rows} == REGIONS

    # Same commit ids in another folder: fixed contents, names and dates.
    other = copy_example(tmp_path / "other")
    setup_data(other)
    assert git(other / "case-data", "rev-parse", "HEAD") == git(repo, "rev-parse", "HEAD")
    assert git(repo, "rev-parse", "HEAD").startswith(README_NEWEST)

    assert "nothing to do" in setup_data(workspace)
    assert len(git(repo, "log", "--format=%H").splitlines()) == DATA_VERSIONS + 1

    done = run_model(workspace, tmp_path / "run-all", {"horizon": 14, "window": 21, "region": "all"})
    assert done.returncode == 0, done.stdout + done.stderr
    progress = [line for line in done.stdout.splitlines() if line.startswith("::progress:: ")]
    assert progress[-1].startswith("::progress:: 1.0000")
    summary = check_outputs(tmp_path / "run-all" / "outputs", REGIONS, horizon=14)
    assert summary["data_through"] == rows[-1]["date"]
    # The synthetic waves: north still growing, the other two past their peaks.
    assert summary["regions"]["north"]["growth_rate_per_day"] > 0
    assert summary["regions"]["south"]["growth_rate_per_day"] < 0

    done = run_model(workspace, tmp_path / "run-north", {"horizon": 3, "window": 7, "region": "north"})
    assert done.returncode == 0, done.stdout + done.stderr
    check_outputs(tmp_path / "run-north" / "outputs", {"north"}, horizon=3)

    added = setup_data(workspace, "--new-day")
    assert "Added" in added
    assert len(git(repo, "log", "--format=%H", "--", "cases.csv").splitlines()) == DATA_VERSIONS + 1
    assert len(read_csv(repo / "cases.csv")) == (HISTORY_DAYS + 1) * len(REGIONS)

    setup_data(workspace, "--reset")
    assert git(repo, "rev-parse", "HEAD") == git(other / "case-data", "rev-parse", "HEAD")


def test_the_model_explains_bad_input(tmp_path: Path) -> None:
    workspace = copy_example(tmp_path / "casecounts")
    setup_data(workspace)
    done = run_model(workspace, tmp_path / "run", {"horizon": 14, "window": 21, "region": "west"})
    assert done.returncode == 1
    assert "region 'west' is not in the data" in done.stderr
    assert "Traceback" not in done.stderr


def modelrunner(*args: str, env: dict[str, str]) -> str:
    """Run the ``modelrunner`` CLI as the README does; it must succeed and never show a traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "modelrunner", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert done.returncode == 0, f"{args} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def run_projection(env: dict[str, str], *args: str) -> dict[str, Any]:
    """``modelrunner run projection ARGS --wait``: the finished run, with how it was answered."""
    finished: dict[str, Any] = json.loads(modelrunner("run", "projection", *args, "--wait", "--json", env=env))
    assert finished["status"] == "succeeded", finished
    return finished


def test_the_readme_walk_through(server: Server, workspace: Path, tmp_path: Path) -> None:
    env = server.env
    repo = workspace / "case-data"
    data_commits = git(repo, "log", "--format=%H", "--", "cases.csv").splitlines()

    # serve syncs at start too, so this sync may find the versions already recorded; either way
    # every commit that changed cases.csv is a version, newest first, and the README-only one is not.
    synced = json.loads(modelrunner("data", "sync", "cases", "--json", env=env))
    assert synced["status"] == "succeeded"
    versions = json.loads(modelrunner("data", "versions", "cases", "--json", env=env))
    assert [version["version"] for version in versions] == data_commits
    assert "cases.csv" in modelrunner("data", "show", "cases", data_commits[0][:8], env=env)
    assert "cases" in modelrunner("data", "list", env=env)

    first = run_projection(env)
    assert first["submission"] == "created"
    assert first["inputs"]["cases"]["version"] == data_commits[0]
    modelrunner("runs", "outputs", str(first["id"]), "--download", str(tmp_path / "first"), env=env)
    first_summary = check_outputs(tmp_path / "first", REGIONS, horizon=14)

    again = run_projection(env)
    assert again["submission"] == "cache_hit"
    assert again["source_run_id"] == first["id"]

    # New data arrives: one more day, one more version, and the same request computes again.
    setup_data(workspace, "--new-day")
    new_head = git(repo, "rev-parse", "HEAD")
    modelrunner("data", "sync", "cases", env=env)
    versions = json.loads(modelrunner("data", "versions", "cases", "--json", env=env))
    assert [version["version"] for version in versions] == [new_head, *data_commits]
    fresh = run_projection(env)
    assert fresh["submission"] == "created"
    assert fresh["inputs"]["cases"]["version"] == new_head
    modelrunner("runs", "outputs", str(fresh["id"]), "--download", str(tmp_path / "fresh"), env=env)
    fresh_summary = check_outputs(tmp_path / "fresh", REGIONS, horizon=14)
    assert fresh_summary["data_through"] > first_summary["data_through"]

    # Pinning the older version (by a prefix of its id) is answered by the run that used it.
    pinned = run_projection(env, "-i", f"cases={data_commits[0][:8]}")
    assert pinned["submission"] == "cache_hit"
    assert pinned["source_run_id"] == first["id"]

    # Only the new version is recent data (the history carries fixed dates in 2025).
    found = httpx.get(
        f"{server.url}/api/v1/models/projection/results",
        params={"horizon": 14, "max_age": "2d"},
        headers=server.headers,
        timeout=10,
    )
    assert found.status_code == 200, found.text
    assert found.json()["id"] == fresh["id"]
