"""The one lease of a worker pool's attempts: the stored lease, which the worker's claim and
heartbeats renew and the dispatcher reaps by. The worker here is the test itself, speaking the
worker's HTTP calls to an in-process server, so that it can fall silent at a chosen moment."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from modelrunner.backends.worker_pool import WorkerPool
from modelrunner.clock import utcnow
from modelrunner.platform import Platform
from modelrunner.settings import Settings
from modelrunner.store import queries
from tests.conftest import admin_client
from tests.integration.runs_api import get_run, submit, wait_for_status, wait_until

LEASE = 3.0


@pytest.fixture
def workspace(workspace: Path) -> Path:
    spec = yaml.safe_load((workspace / "modelrunner.yaml").read_text())
    spec.update(backends={"pool": {"type": "worker", "lease_seconds": LEASE}}, default_backend="pool")
    (workspace / "modelrunner.yaml").write_text(yaml.safe_dump(spec))
    return workspace


def claim(client: TestClient) -> dict[str, Any]:
    """Claim the pool's next attempt as a worker would (the run must be submitted already)."""
    response = client.post("/api/v1/pools/pool/claim", params={"wait": 10}, json={"worker": "test-host:1"})
    assert response.status_code == 200, response.text
    claimed: dict[str, Any] = response.json()
    return claimed


def beat(client: TestClient, claimed: dict[str, Any], pid: int | None = None) -> Any:
    """One heartbeat of the claimed attempt, with its callback token; the response."""
    return client.post(
        f"/api/v1/attempts/{claimed['attempt_id']}/heartbeat",
        json={"pid": pid, "host": "test-host"},
        headers={"Authorization": f"Bearer {claimed['callback_token']}"},
    )


def lease_of(platform: Platform, attempt_id: int) -> dt.datetime:
    with platform.database.read() as session:
        attempt = queries.get_attempt(session, attempt_id)
        assert attempt is not None
        return attempt.lease_expires_at


def attempt_statuses(client: TestClient, run_id: int) -> list[str]:
    return [a["status"] for a in get_run(client, run_id)["attempts"]]


@pytest.fixture
def client(platform: Platform) -> Iterator[TestClient]:
    with admin_client(platform) as test_client:
        yield test_client


def test_the_claim_and_each_heartbeat_move_the_stored_lease_and_the_dispatcher_does_not(
    platform: Platform, client: TestClient
) -> None:
    run_id = submit(client, "sleeper", {"seconds": 30})["id"]
    before_claim = utcnow()
    claimed = claim(client)
    claimed_lease = lease_of(platform, claimed["attempt_id"])
    assert before_claim + dt.timedelta(seconds=LEASE) <= claimed_lease <= utcnow() + dt.timedelta(seconds=LEASE)

    time.sleep(0.5)
    before_beat = utcnow()
    assert beat(client, claimed, pid=4242).json() == {"action": "continue", "reason": None, "message": ""}
    renewed = lease_of(platform, claimed["attempt_id"])
    assert renewed >= before_beat + dt.timedelta(seconds=LEASE) > claimed_lease
    wait_for_status(client, run_id, "running")

    # The dispatcher renews its own attempts every third of its lease; not one a worker holds.
    time.sleep(LEASE / 2)
    assert lease_of(platform, claimed["attempt_id"]) == renewed


def test_a_worker_that_stops_heartbeating_is_reaped_from_the_stored_lease(
    platform: Platform, client: TestClient
) -> None:
    run_id = submit(client, "sleeper", {"seconds": 30})["id"]
    claimed = claim(client)
    assert beat(client, claimed, pid=4242).status_code == 200
    wait_for_status(client, run_id, "running")
    silent_since = time.monotonic()

    wait_until(lambda: attempt_statuses(client, run_id) == ["lost"], LEASE + 5, "the silent worker's attempt is lost")
    assert time.monotonic() - silent_since >= LEASE * 0.9, "lost only once its lease ran out"
    run = get_run(client, run_id)
    assert "no heartbeat" in run["attempts"][0]["error"]
    assert run["status"] == "queued", "the run waits for another worker"
    pool = platform.backends["pool"]
    assert isinstance(pool, WorkerPool) and not pool.holds(claimed["attempt_id"])
    late = beat(client, claimed)
    assert late.status_code == 401 and "spent" in late.json()["detail"]


def test_a_worker_told_to_stop_has_the_grace_period_then_its_attempt_ends_cancelled_not_lost(
    platform: Platform, settings: Settings, client: TestClient
) -> None:
    run_id = submit(client, "sleeper", {"seconds": 30})["id"]
    claimed = claim(client)
    assert beat(client, claimed, pid=4242).status_code == 200
    wait_for_status(client, run_id, "running")

    cancelled_at = utcnow()
    assert client.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200
    grace = dt.timedelta(seconds=LEASE + settings.grace_seconds)
    wait_until(
        lambda: lease_of(platform, claimed["attempt_id"]) >= cancelled_at + grace,
        5,
        "the lease is extended by the grace period",
    )
    assert beat(client, claimed).json()["action"] == "stop"  # then the worker falls silent

    wait_until(
        lambda: attempt_statuses(client, run_id) == ["cancelled"],
        LEASE + settings.grace_seconds + 5,
        "the silent attempt ends as it was stopped",
    )
    assert get_run(client, run_id)["status"] == "cancelled"


def test_two_servers_on_one_database_do_not_reap_each_others_live_worker_attempts(
    settings: Settings, tmp_path: Path
) -> None:
    first = Platform(settings)
    # Another server on the same database, serving a pool of the same name to workers of its own.
    second = Platform(settings.model_copy(update={"data_dir": tmp_path / "second-state"}))
    with admin_client(first) as client, admin_client(second):
        run_id = submit(client, "sleeper", {"seconds": 30})["id"]
        claimed = claim(client)
        assert beat(client, claimed, pid=4242).status_code == 200
        wait_for_status(client, run_id, "running")

        # Beats to the first server for several leases: both servers' reapers see a live lease.
        until = time.monotonic() + 2.5 * LEASE
        while time.monotonic() < until:
            time.sleep(LEASE / 6)
            assert beat(client, claimed).json()["action"] == "continue"
            assert attempt_statuses(client, run_id) == ["running"]

        # Silent, it is lost (whichever server finds so first), and the first server's pool lets
        # go of it.
        wait_until(lambda: attempt_statuses(client, run_id) == ["lost"], LEASE + 5, "the silent attempt is lost")
        pool = first.backends["pool"]
        assert isinstance(pool, WorkerPool)
        wait_until(lambda: not pool.holds(claimed["attempt_id"]), LEASE + 5, "the first server lets go of it")
