"""The ``examples/daily_estimates`` walk-through as its README tells a user to follow it: create the
data repository, try the pipeline on a ``test`` server (publish step left out, no automatic runs),
rerun it from ``summarise``, move to ``production`` (which computes its own results), let a new day
of data arrive and watch the trigger start a pipeline on it, fire the schedule, export the status.
Plus the data script and one step run under the model contract by hand."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.conftest import FINAL, REPO, Server

EXAMPLE = REPO / "examples" / "daily_estimates"
MODEL = "daily_estimates"
REGIONS = ["central", "north", "south", "west"]  # sorted: the order of the fan-out
HISTORY_DAYS = 42
DATA_VERSIONS = 3  # commits of data/cases-repo
# The newest data version as the example's README shows it; change the README too if
# setup_data.py changes the data.
README_NEWEST = "7961f230b1dd"
TRIGGER = f"{MODEL}/on-new-data"
SCHEDULE = f"{MODEL}/daily"
WINDOW, GENERATION_TIME = 7, 5.0  # the model's default parameters

T = TypeVar("T")


def copy_example(destination: Path) -> Path:
    """A private copy of the example, without the data or state a developer's own use left in it."""
    ignored = shutil.ignore_patterns("data", ".modelrunner", "published", "__pycache__")
    shutil.copytree(EXAMPLE, destination, ignore=ignored)
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


def git(repo: Path, *args: str) -> str:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    return subprocess.run(
        ["git", "-C", str(repo), *args], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def expected_rt(cases_csv: Path) -> tuple[int, int, float]:
    """The estimate worked out here from the raw file, without the model's code: the cases of the
    last week, of the week before, and Rt = (ratio of the two) ** (generation time / window)."""
    counts = [int(row["new_cases"]) for row in read_csv(cases_csv.read_text())]
    last, previous = sum(counts[-WINDOW:]), sum(counts[-2 * WINDOW : -WINDOW])
    return last, previous, ((last + 0.5) / (previous + 0.5)) ** (GENERATION_TIME / WINDOW)


def check_summary(rows: list[dict[str, str]], repo: Path) -> None:
    """One row per region, each with the numbers its own data gives and a trend its interval backs."""
    assert [row["region"] for row in rows] == REGIONS
    for row in rows:
        last, previous, rt = expected_rt(repo / row["region"] / "cases.csv")
        assert (int(row["last_window_cases"]), int(row["previous_window_cases"])) == (last, previous)
        assert float(row["rt"]) == pytest.approx(rt, abs=1e-4), row
        low, high = float(row["rt_lower"]), float(row["rt_upper"])
        assert low < float(row["rt"]) < high
        assert row["trend"] == ("growing" if low > 1 else "declining" if high < 1 else "stable")
    by_region = {row["region"]: row for row in rows}
    # The synthetic waves: north still growing, central past its peak.
    assert (by_region["north"]["trend"], by_region["central"]["trend"]) == ("growing", "declining")


def run_step_by_hand(workspace: Path, folder: Path, script: str, item: str) -> subprocess.CompletedProcess[str]:
    """Run a step's script under the model contract with the data repository as the `cases` input."""
    inputs, outputs = folder / "inputs", folder / "outputs"
    shutil.copytree(workspace / "data" / "cases-repo", inputs / "cases", ignore=shutil.ignore_patterns(".git"))
    outputs.mkdir()
    (folder / "params.json").write_text(json.dumps({"window": WINDOW, "generation_time": GENERATION_TIME}))
    env = {key: value for key, value in os.environ.items() if not key.startswith("MODELRUNNER_")}
    env.update(
        MODELRUNNER_PARAMS=str(folder / "params.json"),
        MODELRUNNER_INPUTS=str(inputs),
        MODELRUNNER_OUTPUTS=str(outputs),
        MODELRUNNER_ITEM=json.dumps(item),
    )
    return subprocess.run(
        [sys.executable, script], cwd=workspace / MODEL, env=env, capture_output=True, text=True, timeout=60
    )


def test_setup_data_is_deterministic_and_a_region_estimates_by_hand(tmp_path: Path) -> None:
    workspace = copy_example(tmp_path / "daily_estimates")
    setup_data(workspace)
    repo = workspace / "data" / "cases-repo"
    assert len(git(repo, "log", "--format=%H").splitlines()) == DATA_VERSIONS
    # Nothing but one folder per region at the top: the fan-out takes every top-level entry.
    assert sorted(entry.name for entry in repo.iterdir() if entry.name != ".git") == REGIONS
    for region in REGIONS:
        assert len(read_csv((repo / region / "cases.csv").read_text())) == HISTORY_DAYS

    # Same commit ids in another folder: fixed contents, names and dates.
    other = copy_example(tmp_path / "other")
    setup_data(other)
    assert git(other / "data" / "cases-repo", "rev-parse", "HEAD") == git(repo, "rev-parse", "HEAD")
    assert git(repo, "rev-parse", "HEAD").startswith(README_NEWEST)
    assert "nothing to do" in setup_data(workspace)

    done = run_step_by_hand(workspace, tmp_path / "north", "estimate.py", "north")
    assert done.returncode == 0, done.stdout + done.stderr
    progress = [line for line in done.stdout.splitlines() if line.startswith("::progress:: ")]
    assert progress[0].startswith("::progress:: 0.1000 north") and progress[-1].startswith("::progress:: 1.0000")
    found = json.loads((tmp_path / "north" / "outputs" / "estimate.json").read_text())
    assert (found["last_window_cases"], found["previous_window_cases"], found["rt"]) == pytest.approx(
        expected_rt(repo / "north" / "cases.csv"), abs=1e-4
    )
    assert found["data_through"] == "2025-07-13"

    done = run_step_by_hand(workspace, tmp_path / "east", "estimate.py", "east")
    assert done.returncode == 1
    assert "east/cases.csv is missing" in done.stderr and "Traceback" not in done.stderr

    assert "Added 2025-07-14" in setup_data(workspace, "--new-day")
    assert len(git(repo, "log", "--format=%H").splitlines()) == DATA_VERSIONS + 1
    assert all(len(read_csv((repo / r / "cases.csv").read_text())) == HISTORY_DAYS + 1 for r in REGIONS)
    setup_data(workspace, "--reset")
    assert git(repo, "rev-parse", "HEAD") == git(other / "data" / "cases-repo", "rev-parse", "HEAD")


# --- the walk-through against a real server --------------------------------------------------------


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """Overrides the conftest fixture: the example with its data repository created, so that
    ``settings``, ``server_env`` and ``server`` serve it."""
    copied = copy_example(tmp_path / "daily_estimates")
    setup_data(copied)
    return copied


@pytest.fixture
def server_env(server_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The README's first server: the test profile, and a folder for the publish step."""
    return {**server_env, "MODELRUNNER_PROFILE": "test", "DAILY_ESTIMATES_PUBLISH_DIR": str(tmp_path / "published")}


def modelrunner(*args: str, env: dict[str, str]) -> str:
    """Run the ``modelrunner`` CLI as the README does; it must succeed and never show a traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "modelrunner", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert done.returncode == 0, f"{args} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def cli_json(*args: str, env: dict[str, str]) -> Any:
    return json.loads(modelrunner(*args, "--json", env=env))


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 30) -> T:
    """Poll ``check`` until it returns something other than None (or False); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None and found is not False:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {timeout}s")
        time.sleep(0.2)


def finished(env: dict[str, str], run_id: int) -> dict[str, Any]:
    run: dict[str, Any] = wait_for(
        lambda: found if (found := cli_json("runs", "show", str(run_id), env=env))["status"] in FINAL else None,
        f"run {run_id} to end",
    )
    assert run["status"] == "succeeded", run
    return run


def children(server: Server, pipeline_id: int) -> dict[str, dict[str, Any]]:
    """The step runs of a pipeline run, in full (with attempts), by ``step`` or ``step/item``."""
    listed = cli_json("runs", "list", "--pipeline", str(pipeline_id), env=server.env)
    runs = [
        httpx.get(headers=server.headers, url=f"{server.url}/api/v1/runs/{run['id']}", timeout=10).json()
        for run in listed
    ]
    return {run["step"] + (f"/{run['item_key']}" if run["item_key"] else ""): run for run in runs}


def computed(run: dict[str, Any]) -> bool:
    return not run["cache_hit"] and run["source_run_id"] is None and len(run["attempts"]) == 1


def answered_from_cache(run: dict[str, Any]) -> bool:
    return run["cache_hit"] and run["source_run_id"] is not None and run["attempts"] == []


def output_text(server: Server, run_id: int, path: str) -> str:
    response = httpx.get(headers=server.headers, url=f"{server.url}/api/v1/runs/{run_id}/outputs/{path}", timeout=10)
    assert response.status_code == 200, response.text
    return response.text


ESTIMATES = [f"estimate/{region}" for region in REGIONS]


def test_the_readme_walk_through(server: Server, workspace: Path, tmp_path: Path) -> None:
    env = server.env
    repo = workspace / "data" / "cases-repo"
    published = Path(env["DAILY_ESTIMATES_PUBLISH_DIR"])
    data_commits = git(repo, "log", "--format=%H").splitlines()

    # --- a test server: the publish step is left out, schedules and triggers create nothing ---
    modelrunner("data", "sync", "cases", env=env)
    versions = cli_json("data", "versions", "cases", env=env)
    assert [version["version"] for version in versions] == data_commits
    [trigger] = cli_json("triggers", "list", env=env)
    assert (trigger["name"], trigger["active"]) == (TRIGGER, False)
    assert "automatic: false" in trigger["paused_by"]
    assert cli_json("runs", "list", env=env) == []  # the history fired nothing

    first = cli_json("run", MODEL, "--wait", env=env)
    assert (first["status"], first["submission"], first["kind"]) == ("succeeded", "created", "pipeline")
    assert first["inputs"]["cases"]["version"] == data_commits[0]
    assert [(s["name"], s["status"], s["items"]) for s in first["steps"]] == [
        ("estimate", "succeeded", len(REGIONS)),
        ("summarise", "succeeded", 1),
        ("publish", "skipped", 0),
    ]
    steps = children(server, first["id"])
    assert sorted(steps) == [*ESTIMATES, "summarise"]
    assert all(computed(run) for run in steps.values())
    assert [steps[name]["item"] for name in ESTIMATES] == REGIONS  # MODELRUNNER_ITEM of each child
    summary = read_csv(output_text(server, first["id"], "summarise/summary.csv"))
    check_summary(summary, repo)
    north = json.loads(output_text(server, first["id"], "estimate/north/estimate.json"))
    assert north["rt"] == float(next(row for row in summary if row["region"] == "north")["rt"])
    assert "::progress:: 0.5000 north: fitting" in modelrunner(
        "runs", "logs", str(steps["estimate/north"]["id"]), env=env
    )
    assert not published.exists()

    # summarise.py edited, then a rerun from summarise: each step is keyed by the files it uses
    # (`files:`), so the estimates are not executed again; summarise is: 1 of 5 step runs computed.
    script = workspace / MODEL / "summarise.py"
    script.write_text(script.read_text() + "# The table's layout, as the team edits it.\n")
    rerun = cli_json("runs", "rerun", str(first["id"]), "--from", "summarise", env=env)
    assert rerun["submission"] == "created" and rerun["id"] != first["id"]
    rerun_run = finished(env, rerun["id"])
    again = children(server, rerun["id"])
    assert sorted(again) == [*ESTIMATES, "summarise"]
    assert [name for name, run in sorted(again.items()) if computed(run)] == ["summarise"]
    for name in ESTIMATES:
        assert answered_from_cache(again[name]), again[name]
        assert again[name]["source_run_id"] == steps[name]["id"]
    assert rerun_run["model_version"] != first["model_version"]  # what ran is the edited folder
    explained = modelrunner("runs", "explain", str(rerun["id"]), env=env).splitlines()
    north, summarised = again["estimate/north"], again["summarise"]
    assert f"run {north['id']} estimate[north]: answered by run {steps['estimate/north']['id']}" in "\n".join(explained)
    assert f"run {summarised['id']} summarise: computed again as asked" in "\n".join(explained)
    assert output_text(server, rerun["id"], "summarise/summary.csv") == output_text(
        server, first["id"], "summarise/summary.csv"
    )

    # --- production: publish on, schedules and triggers on ---
    server.stop()
    server.env["MODELRUNNER_PROFILE"] = "production"
    server.start()
    env = server.env
    production = cli_json("run", MODEL, "--wait", env=env)
    # Another pipeline (its publish step is in), under another profile: nothing the test server
    # computed answers for production, though the code, parameters and data are the same.
    assert (production["status"], production["submission"]) == ("succeeded", "created")
    steps = children(server, production["id"])
    assert sorted(steps) == [*ESTIMATES, "publish", "summarise"]  # N regions + 2 step runs
    assert all(computed(steps[name]) for name in [*ESTIMATES, "summarise", "publish"])
    assert read_csv((published / "summary.csv").read_text()) == summary
    page = (published / "index.html").read_text()
    assert "Data through 2025-07-13." in page and "Computed under the profile production." in page
    assert "publish/report.html" in {output["path"] for output in production["outputs"]}

    # The trigger is watching (it has seen the history, so the history fired nothing).
    wait_for(
        lambda: cli_json("triggers", "list", env=env)[0]["last_event_id"] is not None, "the trigger to start watching"
    )
    # New data: one more day, committed; the sync records it and the trigger starts a pipeline on it.
    assert "Added 2025-07-14" in setup_data(workspace, "--new-day")
    new_head = git(repo, "rev-parse", "HEAD")
    modelrunner("data", "sync", "cases", env=env)

    def triggered() -> dict[str, Any] | None:
        runs = cli_json("runs", "list", "--model", MODEL, env=env)
        return next((run for run in runs if run["origin"] == f"trigger:{TRIGGER}"), None)

    fired = wait_for(triggered, "the trigger to start a pipeline on the new day")
    assert fired["inputs"]["cases"]["version"] == new_head
    fired = finished(env, fired["id"])
    steps = children(server, fired["id"])
    assert sorted(steps) == [*ESTIMATES, "publish", "summarise"]
    assert all(computed(run) for run in steps.values())  # new data: every step computes
    new_summary = read_csv(output_text(server, fired["id"], "summarise/summary.csv"))
    check_summary(new_summary, repo)
    assert {row["data_through"] for row in new_summary} == {"2025-07-14"}
    assert read_csv((published / "summary.csv").read_text()) == new_summary
    [trigger] = cli_json("triggers", "list", env=env)
    assert trigger["active"] and trigger["last_firings"][0]["run_ids"] == [fired["id"]]
    assert [run["id"] for run in cli_json("runs", "list", "--model", MODEL, env=env)] == [
        fired["id"],
        production["id"],
        rerun["id"],
        first["id"],
    ]

    # The daily schedule: noon in New York. Fired now, it is answered by the triggered pipeline.
    [schedule] = cli_json("schedules", "list", env=env)
    assert (schedule["name"], schedule["cron"], schedule["timezone"]) == (SCHEDULE, "0 12 * * *", "America/New_York")
    assert schedule["active"] and "12:00:00" in schedule["next_fire_at_local"]
    firing = cli_json("schedules", "run", "daily", env=env)
    [noon] = firing["run_ids"]
    noon_run = cli_json("runs", "show", str(noon), env=env)
    assert (noon_run["status"], noon_run["cache_hit"], noon_run["source_run_id"]) == ("succeeded", True, fired["id"])

    # The status export a team keeps in git: one row per schedule item, trigger, and on demand.
    status = read_csv(modelrunner("export", "status", "--csv", env=env))
    rows = {(row["model"], row["schedule"], row["trigger"]): row for row in status}
    assert set(rows) == {(MODEL, "", ""), (MODEL, SCHEDULE, ""), (MODEL, "", TRIGGER)}
    by_trigger, by_schedule = rows[MODEL, "", TRIGGER], rows[MODEL, SCHEDULE, ""]
    assert (by_trigger["last_run_id"], by_trigger["last_status"]) == (str(fired["id"]), "succeeded")
    assert (by_schedule["last_run_id"], by_schedule["cache_hits"]) == (str(noon), "1")
