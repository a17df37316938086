"""The model page's form sets a run's own timeout where the model allows one (``overridable:``),
and a value past the model's limit is refused on the page, naming the limit."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from modelrunner.platform import Platform
from modelrunner.spec.workspace import Workspace
from tests.conftest import wait_for_run
from tests.identities import add_user
from tests.integration.test_web_pages import csrf_of
from tests.integration.test_web_run_lists import PASSWORD, signed_in


@pytest.fixture
def workspace(workspace: Path) -> Path:
    shutil.copytree(workspace / "sleeper", workspace / "napper")
    spec = yaml.safe_load((workspace / "napper" / "model.yaml").read_text())
    spec.update(name="napper", overridable={"timeout": {"max": "1h"}})
    (workspace / "napper" / "model.yaml").write_text(yaml.safe_dump(spec))
    return workspace


def test_the_form_sets_a_runs_own_timeout_within_the_limit(client: TestClient, platform: Platform) -> None:
    add_user(platform.database, "ada", admin=True, password=PASSWORD)
    ada = signed_in(TestClient(client.app, follow_redirects=False), "ada")
    page = ada.get("/models/napper")
    assert 'name="run.timeout"' in page.text and "at most 1h" in page.text
    assert 'name="run.timeout"' not in ada.get("/models/sleeper").text  # it declares no overridable

    over = ada.post("/models/napper/runs", data={"csrf": csrf_of(page.text), "seconds": "3", "run.timeout": "2h"})
    assert over.status_code == 422
    assert "overridable.timeout.max: 1h" in over.text
    assert 'value="2h"' in over.text  # what was typed stays in the form

    short = ada.post("/models/napper/runs", data={"csrf": csrf_of(page.text), "seconds": "3", "run.timeout": "1s"})
    assert short.status_code == 303, short.text
    run_id = int(re.sub(r"\D", "", short.headers["location"]))
    assert wait_for_run(client.get, run_id)["status"] == "timed_out"


def test_a_schedules_each_item_carries_its_own_timeout(client: TestClient, platform: Platform, workspace: Path) -> None:
    path = workspace / "napper" / "model.yaml"
    spec = yaml.safe_load(path.read_text())
    each = [{"seconds": 3, "overrides": {"timeout": "1s"}}, {"seconds": 3, "tag": "own"}]
    spec["schedules"] = [{"name": "nightly", "cron": "0 3 * * *", "each": each}]
    path.write_text(yaml.safe_dump(spec))

    firing = platform.scheduler.fire_now("napper/nightly")

    assert firing.status == "submitted", firing.detail
    listed = client.get("/api/v1/runs", params={"model": "napper"}).json()["items"]
    finished = {run["params"]["tag"]: wait_for_run(client.get, run["id"]) for run in listed}
    assert finished[""]["status"] == "timed_out"  # its own 1 s
    assert finished["own"]["status"] == "succeeded"  # the model's 60 s
    assert finished[""]["params"] == {"seconds": 3, "tag": "", "counter": "", "ignore_sigterm": False}

    spec["schedules"][0]["each"] = [{"seconds": 1, "overrides": {"timeout": "2h"}}]
    path.write_text(yaml.safe_dump(spec))
    refused = platform.scheduler.fire_now("napper/nightly")
    assert refused.status == "failed"
    assert "overridable.timeout.max: 1h" in refused.detail


def test_check_names_a_schedule_item_over_the_models_limit(workspace: Path) -> None:
    path = workspace / "napper" / "model.yaml"
    spec = yaml.safe_load(path.read_text())
    each = [{"seconds": 1}, {"seconds": 1, "overrides": {"timeout": "8h"}}]
    spec["schedules"] = [{"name": "nightly", "cron": "0 3 * * *", "each": each}]
    path.write_text(yaml.safe_dump(spec))

    problems = [(p.field, p.message) for p in Workspace(workspace).problems()]

    assert problems == [
        (
            "schedules.0.each.1",
            "overrides.timeout: 8h is over the limit of model 'napper' (overridable.timeout.max: 1h)",
        )
    ]


def test_a_rerun_keeps_the_runs_own_timeout(client: TestClient) -> None:
    body = {"params": {"seconds": 3}, "overrides": {"timeout": "1s"}}
    submitted = client.post("/api/v1/models/napper/runs", json=body)
    assert submitted.status_code == 201, submitted.text
    assert wait_for_run(client.get, submitted.json()["id"])["status"] == "timed_out"

    again = client.post(f"/api/v1/runs/{submitted.json()['id']}/rerun")
    assert again.status_code == 201, again.text
    assert wait_for_run(client.get, again.json()["id"])["status"] == "timed_out"
