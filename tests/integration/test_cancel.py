"""POST /api/v1/runs/{id}/cancel: running and queued runs stop, and no process is left behind."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from modelrunner.platform import Platform
from modelrunner.settings import Settings
from tests.conftest import wait_for_run
from tests.integration.runs_api import (
    fill_the_backend,
    get_run,
    process_gone,
    read_pid,
    status_path,
    submit,
    wait_for_status,
    wait_until,
)


def cancel(client: TestClient, run_id: int) -> dict[str, object]:
    response = client.post(f"/api/v1/runs/{run_id}/cancel")
    assert response.status_code == 200, response.text
    run: dict[str, object] = response.json()
    return run


def read_pids(pidfile: Path) -> list[int] | None:
    """The pids a forker run wrote, once the file is complete."""
    if not pidfile.exists():
        return None
    text = pidfile.read_text()
    return [int(p) for p in text.split()] if text.endswith("\n") else None


def test_cancel_a_running_run_stops_its_whole_process_group(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    pidfile = tmp_path / "forker.pid"
    run_id = submit(client, "forker", {"pidfile": str(pidfile)})["id"]
    pids = wait_until(lambda: read_pids(pidfile), 10, "forker wrote its pids")
    assert len(pids) == 2
    assert not any(process_gone(pid) for pid in pids)

    cancelled = cancel(client, run_id)
    asked = time.monotonic()

    assert cancelled["status"] == "cancelled"
    assert cancelled["error"] == "cancelled on request"
    wait_until(
        lambda: all(process_gone(pid) for pid in pids),
        settings.grace_seconds + 2,
        f"model process {pids[0]} and its child {pids[1]} gone",
    )
    assert time.monotonic() - asked < settings.grace_seconds + 2
    run = wait_for_run(client.get, run_id)
    assert run["status"] == "cancelled"
    assert run["finished_at"] is not None
    assert status_path(client, run_id) == ["queued", "starting", "running", "cancelled"]
    attempt = wait_until(
        lambda: (a := get_run(client, run_id)["attempts"][-1])["status"] != "running" and a,
        5,
        "the attempt's end is recorded",
    )
    assert attempt["status"] == "cancelled"


def test_cancel_stops_a_model_that_ignores_sigterm(client: TestClient, settings: Settings, tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    run_id = submit(client, "sleeper", {"seconds": 30, "ignore_sigterm": True, "counter": str(counter)})["id"]
    wait_for_status(client, run_id, "running")
    pid = wait_until(lambda: read_pid(counter), 10, "sleeper started")

    cancel(client, run_id)

    wait_until(lambda: process_gone(pid), settings.grace_seconds + 2, f"model {pid} killed after the grace period")
    assert get_run(client, run_id)["status"] == "cancelled"


def test_cancel_a_queued_run_means_it_never_runs(client: TestClient, platform: Platform, tmp_path: Path) -> None:
    taken, queued_id = fill_the_backend(client, platform, tmp_path)

    cancelled = cancel(client, queued_id)

    assert cancelled["status"] == "cancelled"
    assert cancelled["started_at"] is None
    assert cancelled["finished_at"] is not None
    for run_id in taken:
        cancel(client, run_id)
    # Once the backend has room, later work runs; the cancelled run, queued before it, still does not.
    later = wait_for_run(client.get, submit(client, "noop", {"n": 99})["id"])
    assert later["status"] == "succeeded"
    run = get_run(client, queued_id)
    assert (run["status"], run["attempts"]) == ("cancelled", [])
    assert not (tmp_path / run["params"]["tag"]).exists()
    assert status_path(client, queued_id) == ["queued", "cancelled"]


def test_cancel_twice_gives_the_same_result(client: TestClient) -> None:
    run_id = submit(client, "sleeper", {"seconds": 30, "tag": "twice"})["id"]
    wait_for_status(client, run_id, "running")

    first = cancel(client, run_id)
    second = cancel(client, run_id)

    assert first["status"] == second["status"] == "cancelled"
    assert first["finished_at"] == second["finished_at"]
    wait_for_run(client.get, run_id)
    assert cancel(client, run_id)["status"] == "cancelled"
    assert status_path(client, run_id).count("cancelled") == 1


def test_cancel_a_finished_run_is_a_conflict(client: TestClient) -> None:
    succeeded = submit(client, "noop", {"n": 21})["id"]
    failed = submit(client, "no_output")["id"]
    before = wait_for_run(client.get, succeeded)
    wait_for_run(client.get, failed)

    for run_id, status in ((succeeded, "succeeded"), (failed, "failed")):
        response = client.post(f"/api/v1/runs/{run_id}/cancel")
        assert response.status_code == 409
        assert status in response.json()["detail"]
        assert get_run(client, run_id)["status"] == status
        assert status_path(client, run_id)[-1] == status
    assert get_run(client, succeeded)["finished_at"] == before["finished_at"]


def test_cancel_an_unknown_run(client: TestClient) -> None:
    response = client.post("/api/v1/runs/424242/cancel")

    assert response.status_code == 404
    assert response.json() == {"detail": "unknown run 424242"}


def test_a_cancelled_run_is_no_cache_hit_and_does_not_block_a_new_one(client: TestClient) -> None:
    params = {"seconds": 30, "tag": "again"}
    run_id = submit(client, "sleeper", params)["id"]
    cancel(client, run_id)

    again = client.post("/api/v1/models/sleeper/runs", json={"params": params})

    assert again.status_code == 201
    assert again.json()["submission"] == "created"
    assert again.json()["id"] != run_id
    cancel(client, again.json()["id"])
