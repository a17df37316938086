"""GET /api/v1/healthz and /api/v1/metrics as a monitoring system reads them."""

from __future__ import annotations

import shutil
import time
from functools import partial
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from modelrunner.errors import StoreError
from modelrunner.platform import Platform
from modelrunner.settings import Settings
from tests.conftest import free_port, wait_for_run
from tests.integration.runs_api import fill_the_backend, submit, wait_for_status, wait_until

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: TestClient) -> Samples:
    """Every sample of /metrics by name and labels."""
    response = client.get("/api/v1/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def runs_with(samples: Samples, status: str) -> float:
    return samples[("modelrunner_runs", (("status", status),))]


def attempts(samples: Samples, outcome: str, backend: str = "local") -> float:
    return samples[("modelrunner_attempts_total", (("backend", backend), ("outcome", outcome)))]


def launch_failures(samples: Samples, reason: str, backend: str = "local") -> float:
    return samples[("modelrunner_attempt_launch_failures_total", (("backend", backend), ("reason", reason)))]


def add_to_workspace(workspace: Path, **sections: object) -> None:
    spec = yaml.safe_load((workspace / "modelrunner.yaml").read_text())
    (workspace / "modelrunner.yaml").write_text(yaml.safe_dump({**spec, **sections}))


def test_health_and_metrics_of_an_empty_platform(client: TestClient) -> None:
    response = client.get("/api/v1/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}

    samples = scrape(client)

    for status in ("queued", "starting", "running", "succeeded", "failed", "timed_out", "cancelled"):
        assert runs_with(samples, status) == 0
    assert samples[("modelrunner_queue_depth", ())] == 0
    assert samples[("modelrunner_attempt_duration_seconds_count", ())] == 0
    # Every counter an alert watches is there from the start, at 0: its first increase shows.
    for outcome in ("succeeded", "failed", "timed_out", "cancelled", "lost", "preempted"):
        assert attempts(samples, outcome) == 0
    assert launch_failures(samples, "error") == launch_failures(samples, "unreachable") == 0
    assert not [name for name, _ in samples if name.startswith(("modelrunner_oldest", "modelrunner_notifications"))]


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


def test_attempts_are_counted_by_backend_and_outcome(client: TestClient) -> None:
    succeeded = submit(client, "noop", {"n": 1})["id"]
    failed = submit(client, "failing")["id"]  # one retry: two failed attempts
    wait_for_status(client, succeeded, "succeeded")
    wait_for_status(client, failed, "failed")

    samples = scrape(client)

    assert attempts(samples, "succeeded") == 1
    assert attempts(samples, "failed") == 2
    assert attempts(samples, "lost") == attempts(samples, "timed_out") == 0
    assert launch_failures(samples, "error") == 0


def test_a_launch_failure_is_counted(client: TestClient, platform: Platform, settings: Settings) -> None:
    first = submit(client, "noop", {"n": 1})["id"]
    wait_for_status(client, first, "succeeded")
    # The artifact store lost the model's snapshot, which the backend unpacks to launch an attempt.
    for snapshot in Path(settings.resolved_artifacts_url).glob("models/noop/*.tar.gz"):
        snapshot.unlink()
    shutil.rmtree(settings.state_dir / "models")

    second = wait_for_status(client, submit(client, "noop", {"n": 2})["id"], "failed")

    assert "the backend could not launch the attempt" in second["error"]
    samples = scrape(client)
    assert launch_failures(samples, "error") == 1
    assert launch_failures(samples, "unreachable") == 0
    assert attempts(samples, "failed") == 1 and attempts(samples, "succeeded") == 1


def test_the_oldest_queued_runs_age_grows_until_none_waits(
    client: TestClient, platform: Platform, tmp_path: Path
) -> None:
    taken, queued = fill_the_backend(client, platform, tmp_path)
    age = ("modelrunner_oldest_queued_run_age_seconds", (("backend", "local"),))

    first = scrape(client)[age]
    time.sleep(1.0)
    submit(client, "noop", {"n": 1})  # a younger run in the queue changes nothing
    later = scrape(client)[age]

    assert 0 <= first < later and later - first >= 0.9
    for run_id in [queued, *taken]:
        assert client.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200
    wait_until(lambda: age not in scrape(client), 10, "no run waiting in the queue")


def test_unsent_notifications_are_counted(workspace: Path, client: TestClient) -> None:
    # A webhook nobody answers, retried only after a long while: its notification stays unsent.
    add_to_workspace(workspace, notifications={"webhooks": {"attempts": 5, "backoff_seconds": 3600}})
    unsent = ("modelrunner_notifications_unsent", (("channel", "webhook"),))
    url = f"http://127.0.0.1:{free_port()}/hook"
    response = client.post("/api/v1/subscriptions", json={"model": "noop", "channel": "webhook", "url": url})
    assert response.status_code == 201, response.text

    wait_for_status(client, submit(client, "noop", {"n": 1})["id"], "succeeded")

    def retry_due() -> bool:  # its first try failed: nothing sends it for an hour
        pending = client.get("/api/v1/deliveries", params={"status": "pending"}).json()
        return bool(pending and pending[0]["attempt_count"] == 1)

    wait_until(retry_due, 20, "the webhook's retry due")
    assert scrape(client)[unsent] == 1
    assert client.delete(f"/api/v1/subscriptions/{response.json()['id']}").status_code == 200
    wait_until(lambda: unsent not in scrape(client), 10, "the unsent notification cancelled")


def test_failed_dataset_syncs_are_counted(workspace: Path, tmp_path: Path, client: TestClient) -> None:
    missing = tmp_path / "no-such-repo"
    add_to_workspace(workspace, datasets={"cases": {"source": "git", "repo": str(missing), "paths": ["data"]}})
    failures = ("modelrunner_dataset_sync_failures_total", (("dataset", "cases"),))

    def failed(url: str) -> bool:
        return bool(client.get(url).json()["status"] == "failed")

    for _ in range(2):
        response = client.post("/api/v1/datasets/cases/sync")
        assert response.status_code == 202, response.text
        wait_until(partial(failed, f"/api/v1/datasets/cases/syncs/{response.json()['id']}"), 20, "the sync failed")

    assert scrape(client)[failures] == 2


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
