"""Resource classes: named resources in modelrunner.yaml that models ask for by name, the values a
model gives itself winning; the engine applies them (timeouts, slots), backends get them with
each attempt, `modelrunner check` and submit name a class that is not declared."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from modelrunner.platform import Platform
from modelrunner.store import queries
from tests.conftest import wait_for_run
from tests.integration.runs_api import stored_counts, submit, write_model

CLASSES = {
    "quick": {"timeout": "1s", "cpu": 1},
    "wide": {"cpu": 2, "memory": "4Gi"},
}
SLEEPY = 'command: ["python", "-c", "import time; time.sleep(30)"]\n'


@pytest.fixture
def workspace(workspace: Path) -> Path:
    config = workspace / "modelrunner.yaml"
    config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "resource_classes": CLASSES}))
    write_model(workspace, "slow", SLEEPY + "resources: {class: quick}\n")
    write_model(workspace, "patient", SLEEPY + "resources: {class: quick, timeout: 3}\n")
    write_model(workspace, "broad", 'command: ["python", "-c", "pass"]\nresources: {class: wide}\n')
    return workspace


def test_a_class_timeout_stops_the_run_and_the_model_s_own_value_wins(client: TestClient) -> None:
    started = time.monotonic()
    slow = wait_for_run(client.get, submit(client, "slow")["id"], timeout=15)
    assert slow["status"] == "timed_out" and time.monotonic() - started < 8
    patient = submit(client, "patient")
    time.sleep(2)  # past the class's 1 s, within the model's own 3 s
    assert client.get(f"/api/v1/runs/{patient['id']}").json()["status"] == "running"
    assert wait_for_run(client.get, patient["id"], timeout=15)["status"] == "timed_out"


def test_a_class_sets_the_slots_a_run_takes_and_the_model_shows_its_resources(
    client: TestClient, platform: Platform
) -> None:
    run = wait_for_run(client.get, submit(client, "broad")["id"])
    assert run["status"] == "succeeded"
    with platform.database.read() as session:
        stored = queries.get_run(session, run["id"])
    assert stored is not None and stored.slots == 2
    detail = client.get("/api/v1/models/broad").json()
    assert detail["resources"] == {"class": "wide", "cpu": 2, "memory": "4Gi"}
    assert client.get("/api/v1/models/patient").json()["resources"] == {"class": "quick", "cpu": 1, "timeout": 3}


def test_an_undeclared_class_is_named_by_check_and_refused_at_submit(
    client: TestClient, platform: Platform, workspace: Path, server_env: dict[str, str]
) -> None:
    write_model(workspace, "greedy", 'command: ["python", "-c", "pass"]\nresources: {class: huge}\n')
    before = stored_counts(platform)
    response = client.post("/api/v1/models/greedy/runs", json={"params": {}})
    assert response.status_code == 422
    body: dict[str, Any] = response.json()
    assert "unknown resource class 'huge' (resource_classes: quick, wide)" in str(body)
    assert stored_counts(platform) == before  # nothing written

    checked = subprocess.run(
        [sys.executable, "-m", "modelrunner", "check", "--workspace", str(workspace)],
        env=server_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode != 0
    said = " ".join((checked.stdout + checked.stderr).split())
    assert "greedy/model.yaml" in said and "resources.class" in said
    assert "unknown resource class 'huge'" in said and "Traceback" not in said


def test_a_class_cannot_name_a_class(client: TestClient, workspace: Path) -> None:
    config = workspace / "modelrunner.yaml"
    spec = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**spec, "resource_classes": {"big": {"class": "quick"}}}))
    response = client.post("/api/v1/models/noop/runs", json={"params": {}})
    assert response.status_code == 422
    assert "a resource class cannot name another class" in str(response.json())
