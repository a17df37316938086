"""Pipelines: steps run in order of their needs, fan out, pass outputs downstream, fail only what
depends on a failure, and rerun from one step reusing every upstream result."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelrunner.platform import Platform
from modelrunner.settings import Settings
from tests.conftest import TESTS, admin_client, wait_for_run
from tests.integration.runs_api import get_run, submit, wait_for_status, wait_until

REGIONS = ["north", "south", "east", "west", "central"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    shutil.copytree(TESTS / "pipeline_model", settings.workspace / "regional")
    return settings


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.txt"


def executions(ledger: Path) -> list[str]:
    return ledger.read_text().split() if ledger.exists() else []


def steps_of(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["name"]: step for step in run["steps"]}


def children(client: TestClient, pipeline_id: int) -> list[dict[str, Any]]:
    response = client.get("/api/v1/runs", params={"parent": pipeline_id, "limit": 500})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def download(client: TestClient, run_id: int, path: str) -> bytes:
    response = client.get(f"/api/v1/runs/{run_id}/outputs/{path}")
    assert response.status_code == 200, response.text
    return response.content


def test_three_stages_with_a_fan_out_of_five_pass_outputs_downstream(client: TestClient, ledger: Path) -> None:
    submitted = submit(client, "regional", {"ledger": str(ledger)})
    assert submitted["kind"] == "pipeline"
    run = wait_for_run(client.get, submitted["id"])

    assert run["status"] == "succeeded", run["error"]
    assert run["progress"]["fraction"] == 1.0
    steps = steps_of(run)
    assert [s["name"] for s in run["steps"]] == ["estimate", "check", "summarise", "publish"]
    assert {name: (s["status"], s["items"]) for name, s in steps.items()} == {
        "estimate": ("succeeded", 5),
        "check": ("succeeded", 1),
        "summarise": ("succeeded", 1),
        "publish": ("succeeded", 1),
    }
    assert sorted(executions(ledger)) == sorted([f"estimate:{r}" for r in REGIONS] + ["check", "summarise", "publish"])
    # Each fan-out child saw its own item; the fan-in saw every child's output in its own folder.
    summary = json.loads(download(client, run["id"], "summarise/summary.json"))
    assert summary == {"regions": sorted(REGIONS), "total": sum(len(r) for r in REGIONS)}
    assert download(client, run["id"], "publish/published.txt") == b"5 regions, total 25\n"  # 5 + 5 + 4 + 4 + 7 letters
    assert {o["path"] for o in run["outputs"]} >= {f"estimate/{r}/estimate.json" for r in REGIONS}

    steps_runs = children(client, run["id"])
    assert len(steps_runs) == 8
    assert {r["item_key"] for r in steps_runs if r["step"] == "estimate"} == set(REGIONS)
    assert len({r["cache_key"] for r in steps_runs}) == 8  # every step run is its own cache entry
    assert all(r["parent_id"] == run["id"] and r["kind"] == "step" for r in steps_runs)
    # Step runs are listed under their pipeline, not among the runs of the workspace.
    assert [r["id"] for r in client.get("/api/v1/runs").json()["items"]] == [run["id"]]


def test_an_identical_pipeline_is_answered_from_the_cache(client: TestClient, ledger: Path) -> None:
    first = wait_for_run(client.get, submit(client, "regional", {"ledger": str(ledger)})["id"])
    ran = len(executions(ledger))

    again = submit(client, "regional", {"ledger": str(ledger)})

    assert again["submission"] == "cache_hit"
    assert again["source_run_id"] == first["id"]
    assert len(executions(ledger)) == ran


def test_rerun_from_a_step_recomputes_it_and_downstream_and_reuses_upstream(client: TestClient, ledger: Path) -> None:
    first = wait_for_run(client.get, submit(client, "regional", {"ledger": str(ledger)})["id"])
    first_children = {(r["step"], r["item_key"]): r for r in children(client, first["id"])}
    ledger.unlink()

    response = client.post(f"/api/v1/runs/{first['id']}/rerun", json={"from": "summarise"})
    assert response.status_code == 201, response.text
    rerun = wait_for_run(client.get, response.json()["id"])

    assert rerun["status"] == "succeeded", rerun["error"]
    assert rerun["origin"] == f"rerun:{first['id']}"
    assert sorted(executions(ledger)) == ["publish", "summarise"]  # nothing upstream executed again
    for child in children(client, rerun["id"]):
        earlier = first_children[(child["step"], child["item_key"])]
        if child["step"] in ("estimate", "check"):
            assert child["cache_hit"] and child["source_run_id"] == earlier["id"]
            assert get_run(client, child["id"])["attempts"] == []
        else:
            assert not child["cache_hit"]
            assert len(get_run(client, child["id"])["attempts"]) == 1


def test_rerun_only_one_step(client: TestClient, ledger: Path) -> None:
    first = wait_for_run(client.get, submit(client, "regional", {"ledger": str(ledger)})["id"])
    ledger.unlink()

    response = client.post(f"/api/v1/runs/{first['id']}/rerun", json={"only": "publish"})
    rerun = wait_for_run(client.get, response.json()["id"])

    assert rerun["status"] == "succeeded"
    assert executions(ledger) == ["publish"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"from": "nope"}, "has no step 'nope'"),
        ({"from": "summarise", "only": "publish"}, "not both"),
        ({"form": "summarise"}, "form"),
    ],
)
def test_a_bad_rerun_is_refused_and_creates_nothing(
    client: TestClient, ledger: Path, body: dict[str, str], message: str
) -> None:
    first = wait_for_run(client.get, submit(client, "regional", {"ledger": str(ledger)})["id"])

    response = client.post(f"/api/v1/runs/{first['id']}/rerun", json=body)

    assert response.status_code == 422, response.text
    assert message in response.text
    assert [r["id"] for r in client.get("/api/v1/runs").json()["items"]] == [first["id"]]


def test_a_step_run_is_rerun_through_its_pipeline(client: TestClient, ledger: Path) -> None:
    first = wait_for_run(client.get, submit(client, "regional", {"ledger": str(ledger)})["id"])
    step_run = children(client, first["id"])[0]

    response = client.post(f"/api/v1/runs/{step_run['id']}/rerun", json={})

    assert response.status_code == 422
    assert f"runs rerun {first['id']} --only {step_run['step']}" in response.json()["detail"][0]["msg"]


def test_a_failing_child_stops_its_dependants_but_not_independent_steps(client: TestClient, ledger: Path) -> None:
    submitted = submit(client, "regional", {"ledger": str(ledger), "fail_region": "east"})
    run = wait_for_run(client.get, submitted["id"])

    assert run["status"] == "failed"
    assert "step 'estimate' failed" in run["error"] and "east" in run["error"]
    steps = steps_of(run)
    assert steps["estimate"]["status"] == "failed"
    assert steps["estimate"]["counts"] == {"succeeded": 4, "failed": 1}  # the siblings ran to the end
    assert steps["check"]["status"] == "succeeded"  # independent of the failure
    assert steps["summarise"]["status"] == "blocked" and steps["summarise"]["run_ids"] == []
    assert steps["publish"]["status"] == "blocked"
    assert "summarise" not in executions(ledger) and "publish" not in executions(ledger)


def test_rerunning_a_failed_pipeline_reuses_what_succeeded(client: TestClient, ledger: Path) -> None:
    params = {"ledger": str(ledger), "fail_region": "east"}
    first = wait_for_run(client.get, submit(client, "regional", params)["id"])
    assert first["status"] == "failed"
    ledger.unlink()

    response = client.post(f"/api/v1/runs/{first['id']}/rerun", json={"from": "estimate"})
    rerun = wait_for_run(client.get, response.json()["id"])

    assert rerun["status"] == "failed"  # the data for east is still missing
    assert sorted(executions(ledger)) == sorted(f"estimate:{r}" for r in REGIONS)


def test_cancelling_a_pipeline_cancels_its_running_steps(client: TestClient, ledger: Path) -> None:
    submitted = submit(client, "regional", {"ledger": str(ledger), "sleep": 30})
    wait_until(lambda: executions(ledger), 15, "a first step started")

    response = client.post(f"/api/v1/runs/{submitted['id']}/cancel")

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    for child in children(client, submitted["id"]):
        wait_for_status(client, child["id"], "cancelled")
    assert "summarise" not in executions(ledger)


def test_a_profile_that_does_not_publish_skips_publish_steps(settings: Settings, ledger: Path) -> None:
    platform = Platform(settings)
    platform.submitter = type(platform.submitter)(
        platform.database, platform.workspace, platform.artifacts, publish=False
    )
    with admin_client(platform) as client:
        run = wait_for_run(client.get, submit(client, "regional", {"ledger": str(ledger)})["id"])

    assert run["status"] == "succeeded"
    assert steps_of(run)["publish"]["status"] == "skipped"
    assert "publish" not in executions(ledger)
