"""The shapes real pipelines take: a step chained item by item to another (each item's chain goes
on by itself), fan-outs with no item, and steps that run only when a parameter says so. Every
step appends to a ledger, so what ran, in which order and what it saw is counted."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelrunner.platform import Platform
from modelrunner.settings import Settings
from tests.conftest import TESTS, wait_for_run
from tests.identities import add_user
from tests.integration.runs_api import submit
from tests.integration.test_web_pipeline_graph import PASSWORD, graph_in, signed_in


@pytest.fixture
def settings(settings: Settings) -> Settings:
    shutil.copytree(TESTS / "chain_model", settings.workspace / "corpora")
    return settings


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.txt"


def entries(ledger: Path) -> list[tuple[str, str, str]]:
    """(start|end, step[:item], what it saw) for every line, in the order written."""
    lines = ledger.read_text().splitlines() if ledger.exists() else []
    return [(*line.split(" ", 2), "")[:3] for line in lines]  # type: ignore[misc]


def started(ledger: Path) -> list[str]:
    return [name for event, name, _ in entries(ledger) if event == "start"]


def saw(ledger: Path, name: str) -> str:
    return next(seen for event, step, seen in entries(ledger) if event == "start" and step == name)


def position(ledger: Path, event: str, name: str) -> int:
    return next(i for i, (e, step, _) in enumerate(entries(ledger)) if (e, step) == (event, name))


def steps_of(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["name"]: step for step in run["steps"]}


def test_a_slow_item_does_not_hold_back_another_items_chain(client: TestClient, ledger: Path) -> None:
    params = {"ledger": str(ledger), "slow": "beta", "sleep": 4}
    run = wait_for_run(client.get, submit(client, "corpora", params)["id"], timeout=60)

    assert run["status"] == "succeeded", run["error"]
    # alpha's statistics started (and ended) while beta's tests were still running.
    assert position(ledger, "start", "test_stats:alpha") < position(ledger, "end", "tests:beta")
    assert position(ledger, "end", "test_stats:alpha") < position(ledger, "end", "tests:beta")
    # Each item of the chain saw only its own item's outputs, in the usual layout.
    assert saw(ledger, "test_stats:alpha") == "tests/alpha/tests.txt"
    assert saw(ledger, "test_stats:beta") == "tests/beta/tests.txt"
    # The fan-in after it saw every item.
    assert saw(ledger, "summary") == "test_stats/alpha/test_stats.txt,test_stats/beta/test_stats.txt"
    assert sorted(started(ledger)) == ["summary", "test_stats:alpha", "test_stats:beta", "tests:alpha", "tests:beta"]
    steps = steps_of(run)
    assert (steps["test_stats"]["status"], steps["test_stats"]["items"]) == ("succeeded", 2)


def test_a_failed_item_blocks_its_own_chain_only(client: TestClient, ledger: Path) -> None:
    run = wait_for_run(client.get, submit(client, "corpora", {"ledger": str(ledger), "fail": "beta"})["id"])

    assert run["status"] == "failed"
    assert "step 'tests' failed" in run["error"]
    assert "test_stats:alpha" in started(ledger)
    assert "test_stats:beta" not in started(ledger) and "summary" not in started(ledger)
    steps = steps_of(run)
    assert steps["test_stats"]["status"] == "blocked"
    assert steps["test_stats"]["counts"] == {"succeeded": 1}
    assert "beta" in steps["test_stats"]["reason"]
    assert steps["summary"]["status"] == "blocked"


def test_an_item_chain_is_cached_item_by_item(client: TestClient, ledger: Path) -> None:
    first = wait_for_run(client.get, submit(client, "corpora", {"ledger": str(ledger)})["id"])
    ledger.unlink()

    response = client.post(f"/api/v1/runs/{first['id']}/rerun", json={"from": "test_stats"})
    assert response.status_code == 201, response.text
    rerun = wait_for_run(client.get, response.json()["id"])

    assert rerun["status"] == "succeeded", rerun["error"]
    assert sorted(started(ledger)) == ["summary", "test_stats:alpha", "test_stats:beta"]  # the tests reused
    again = submit(client, "corpora", {"ledger": str(ledger)})
    assert again["submission"] == "cache_hit"


def test_an_empty_fan_out_succeeds_with_no_item_and_its_dependants_see_nothing(
    client: TestClient, ledger: Path
) -> None:
    run = wait_for_run(client.get, submit(client, "corpora", {"ledger": str(ledger), "corpora": []})["id"])

    assert run["status"] == "succeeded", run["error"]
    steps = steps_of(run)
    assert {name: (s["status"], s["items"], s["run_ids"]) for name, s in steps.items() if name.startswith("test")} == {
        "tests": ("succeeded", 0, []),
        "test_stats": ("succeeded", 0, []),
    }
    assert started(ledger) == ["summary"]
    assert saw(ledger, "summary") == "-"


def test_a_step_whose_condition_is_false_is_skipped_and_so_are_the_steps_that_need_it(
    client: TestClient, ledger: Path
) -> None:
    run = wait_for_run(client.get, submit(client, "corpora", {"ledger": str(ledger)})["id"])

    assert run["status"] == "succeeded", run["error"]
    steps = steps_of(run)
    assert steps["daily_update"]["status"] == "skipped"
    assert steps["daily_update"]["reason"] == "when: params.run_daily_update is false"
    assert steps["publish_update"]["status"] == "skipped"
    assert steps["publish_update"]["reason"] == "it needs 'daily_update', which is skipped"
    # The summary needs the update only if it runs.
    assert steps["summary"]["status"] == "succeeded"
    assert "daily_update" not in started(ledger) and "publish_update" not in started(ledger)


def test_the_result_of_a_pipeline_that_left_steps_out_is_found_for_the_same_parameters(
    client: TestClient, ledger: Path
) -> None:
    run = wait_for_run(client.get, submit(client, "corpora", {"ledger": str(ledger)})["id"])

    found = client.get("/api/v1/models/corpora/results", params={"ledger": str(ledger)})
    other = client.get("/api/v1/models/corpora/results", params={"ledger": str(ledger), "run_daily_update": "true"})

    assert found.status_code == 200, found.text
    assert found.json()["id"] == run["id"]
    assert other.status_code == 404  # with the update in, it is another pipeline, not computed yet


def test_a_step_whose_condition_holds_runs_and_its_optional_dependant_waits_for_it(
    client: TestClient, ledger: Path
) -> None:
    params = {"ledger": str(ledger), "run_daily_update": True}
    run = wait_for_run(client.get, submit(client, "corpora", params)["id"])

    assert run["status"] == "succeeded", run["error"]
    assert {s["status"] for s in run["steps"]} == {"succeeded"}
    assert position(ledger, "end", "daily_update") < position(ledger, "start", "summary")
    assert "daily_update/daily_update.txt" in saw(ledger, "summary")
    assert saw(ledger, "publish_update") == "daily_update/daily_update.txt"


def test_the_pages_tell_skipped_from_blocked_and_draw_how_steps_are_needed(
    client: TestClient, platform: Platform, ledger: Path
) -> None:
    add_user(platform.database, "ada", admin=True, password=PASSWORD)
    browser = signed_in(TestClient(client.app, follow_redirects=False), "ada")
    run = wait_for_run(client.get, submit(client, "corpora", {"ledger": str(ledger), "fail": "beta"})["id"])

    graph = graph_in(browser.get(f"/runs/{run['id']}").text)

    assert graph.boxes["test_stats"].state == "blocked"
    assert graph.boxes["daily_update"].state == "skipped"
    assert graph.boxes["daily_update"].texts == ["daily_update", "skipped", "when: params.run_daily_…"]
    assert "(when: params.run_daily_update is false)" in graph.entries["daily_update"]
    assert "(it needs 'daily_update', which is skipped)" in graph.entries["publish_update"]
    assert "(not run for beta: the same item of a step it is chained to did not succeed)" in graph.entries["test_stats"]

    structure = graph_in(browser.get("/models/corpora").text)
    assert structure.boxes["test_stats"].texts == ["test_stats", "item by item after tests"]
    assert structure.boxes["daily_update"].texts == ["daily_update", "runs once, if params.run_daily_update"]
    assert "needs tests item by item" in structure.entries["test_stats"]
    assert "needs test_stats, daily_update if it runs" in structure.entries["summary"]
    drawn = {
        (a.attrs["data-need"], a.attrs["data-step"]): a.attrs["class"]
        for a in structure.section.all("path", "pg-arrow")
    }
    assert drawn[("tests", "test_stats")] == "pg-arrow pg-arrow-item"
    assert drawn[("daily_update", "summary")] == "pg-arrow pg-arrow-optional"
    assert drawn[("test_stats", "summary")] == "pg-arrow pg-arrow-all"
