"""GET /api/v1/healthz and /api/v1/metrics as a monitoring system reads them."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from modelrunner.errors import StoreError
from modelrunner.platform import Platform
from tests.conftest import wait_for_run
from tests.integration.runs_api import fill_the_backend, submit


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics by name and labels."""
    response = client.get("/api/v1/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def runs_with(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], status: str) -> float:
    return samples[("modelrunner_runs", (("status", status),))]


def test_health_and_metrics_of_an_empty_platform(client: TestClient) -> None:
    response = client.get("/api/v1/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}

    samples = scrape(client)

    for status in ("queued", "starting", "running", "succeeded", "failed", "timed_out", "cancelled"):
        assert runs_with(samples, status) == 0
    assert samples[("modelrunner_queue_depth", ())] == 0
    assert samples[("modelrunner_attempt_duration_seconds_count", ())] == 0


def test_metrics_count_runs_by_status_and_time_attempts(client: TestClient) -> None:
    succeeded = submit(client, "sleeper", {"seconds": 0.3, "tag": "metrics"})["id"]
    failed = submit(client, "no_output")["id"]
    wait_for_run(client.get, succeeded)
    wait_for_run(client.get, failed)
    submit(client, "sleeper", {"seconds": 0.3, "tag": "metrics"})  # a cache hit is a succeeded run too

    samples = scrape(client)

    assert runs_with(samples, "succeeded") == 2
    assert runs_with(samples, "failed") == 1
    assert runs_with(samples, "running") == 0
    assert samples[("modelrunner_attempt_duration_seconds_count", ())] == 2
    assert samples[("modelrunner_attempt_duration_seconds_sum", ())] >= 0.3
    assert samples[("modelrunner_attempt_duration_seconds_bucket", (("le", "0.1"),))] <= 1
    assert samples[("modelrunner_attempt_duration_seconds_bucket", (("le", "+Inf"),))] == 2


def test_queue_depth_counts_runs_waiting_for_room(client: TestClient, platform: Platform, tmp_path: Path) -> None:
    taken, queued = fill_the_backend(client, platform, tmp_path)
    waiting = submit(client, "noop", {"n": 1})["id"]

    samples = scrape(client)

    assert samples[("modelrunner_queue_depth", ())] == 2
    assert runs_with(samples, "queued") == 2
    assert runs_with(samples, "running") + runs_with(samples, "starting") == len(taken)
    for run_id in [queued, waiting, *taken]:
        assert client.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200
    samples = scrape(client)
    assert samples[("modelrunner_queue_depth", ())] == 0
    assert runs_with(samples, "cancelled") == len(taken) + 2


def test_healthz_is_unavailable_when_the_store_is(
    client: TestClient, platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse() -> None:
        raise StoreError("the database is unavailable: connection refused")

    monkeypatch.setattr(platform.database, "ping", refuse)

    response = client.get("/api/v1/healthz")

    assert response.status_code == 503
    assert response.json() == {"detail": "the database is unavailable: connection refused"}
