"""GET /api/v1/export/status and /export/runtimes: one row per model and source of runs (schedule
item, trigger, on demand), with counts, last runs and runtimes checked against real runs."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelrunner.export import RuntimeRow, StatusRow
from modelrunner.platform import Platform
from tests.conftest import wait_for_run
from tests.integration.runs_api import ISO_UTC, get_run, submit, write_model

API = "/api/v1/export"
Key = tuple[str, str, str, str]  # model, schedule, item, trigger, as CSV cells
ON_DEMAND = ("", "", "")


def export_csv(client: TestClient, kind: str, **query: str) -> list[dict[str, str]]:
    """The export as CSV, parsed; fails unless it is a CSV download headed by the row type's fields."""
    response = client.get(f"{API}/{kind}", params={**query, "format": "csv"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == f"attachment; filename={kind}.csv"
    row_type = StatusRow if kind == "status" else RuntimeRow
    reader = csv.DictReader(io.StringIO(response.text))
    assert reader.fieldnames == list(row_type.model_fields)
    return list(reader)


def export_json(client: TestClient, kind: str, **query: str) -> list[dict[str, Any]]:
    response = client.get(f"{API}/{kind}", params=query)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def by_key(rows: list[dict[str, str]]) -> dict[Key, dict[str, str]]:
    found = {(row["model"], row["schedule"], row["item"], row["trigger"]): row for row in rows}
    assert len(found) == len(rows), "two rows for the same model and source"
    return found


def scheduled(
    client: TestClient, platform: Platform, model: str, params: dict[str, Any], origin: str, **kwargs: Any
) -> dict[str, Any]:
    """Submit as a schedule or a trigger does (with its origin); the run once it has ended."""
    run_id = platform.submitter.submit(model, params, origin=origin, **kwargs).run.id
    platform.dispatcher.wake(queued=True)
    return wait_for_run(client.get, run_id)


def rerun(client: TestClient, run_id: int) -> dict[str, Any]:
    """Compute a run again through the API; the new run once it has ended."""
    response = client.post(f"/api/v1/runs/{run_id}/rerun")
    assert response.status_code == 201, response.text
    return wait_for_run(client.get, response.json()["id"])


def seconds(run: dict[str, Any]) -> float:
    """The run's wall time from the API's own timestamps."""
    started = dt.datetime.fromisoformat(run["started_at"])
    finished = dt.datetime.fromisoformat(run["finished_at"])
    return (finished - started).total_seconds()


def counts(row: dict[str, str]) -> tuple[int, ...]:
    return tuple(int(row[field]) for field in ("succeeded", "cache_hits", "failed", "timed_out", "cancelled"))


@pytest.fixture
def history(client: TestClient, platform: Platform, workspace: Path) -> dict[str, dict[str, Any]]:
    """Runs of every outcome, on demand and from schedule items and a trigger; each by a name."""
    write_model(
        workspace, "slow", 'command: ["python", "-c", "import time; time.sleep(30)"]\nresources: {timeout: 0.5}\n'
    )
    runs: dict[str, dict[str, Any]] = {}
    runs["computed"] = wait_for_run(client.get, submit(client, "noop", {"n": 1})["id"])
    hit = submit(client, "noop", {"n": 1})
    assert hit["submission"] == "cache_hit"
    runs["hit"] = hit
    runs["other"] = wait_for_run(client.get, submit(client, "noop", {"n": 2})["id"])
    runs["rerun"] = rerun(client, runs["computed"]["id"])
    runs["failed"] = wait_for_run(client.get, submit(client, "failing")["id"])
    runs["timed_out"] = wait_for_run(client.get, submit(client, "slow")["id"], timeout=15)
    cancelled = submit(client, "sleeper", {"seconds": 60, "tag": "export"})["id"]
    assert client.post(f"/api/v1/runs/{cancelled}/cancel").status_code == 200
    runs["cancelled"] = wait_for_run(client.get, cancelled)
    runs["daily0"] = scheduled(client, platform, "noop", {"n": 10}, "schedule:noop/daily#0")
    runs["daily0_hit"] = scheduled(client, platform, "noop", {"n": 10}, "schedule:noop/daily#0")
    runs["daily1"] = scheduled(client, platform, "noop", {"n": 11}, "schedule:noop/daily#1")
    # Reruns count with the run they compute again, a rerun of a rerun too.
    runs["daily1_rerun"] = rerun(client, runs["daily1"]["id"])
    runs["daily1_rerun_again"] = rerun(client, runs["daily1_rerun"]["id"])
    runs["hourly0"] = scheduled(client, platform, "failing", {}, "schedule:failing/hourly#0")
    runs["trigger"] = scheduled(client, platform, "noop", {"n": 20}, "trigger:noop/fresh-data")
    expected = {
        "computed": "succeeded",
        "hit": "succeeded",
        "other": "succeeded",
        "rerun": "succeeded",
        "failed": "failed",
        "timed_out": "timed_out",
        "cancelled": "cancelled",
        "daily0": "succeeded",
        "daily0_hit": "succeeded",
        "daily1": "succeeded",
        "daily1_rerun": "succeeded",
        "daily1_rerun_again": "succeeded",
        "hourly0": "failed",
        "trigger": "succeeded",
    }
    assert {name: run["status"] for name, run in runs.items()} == expected
    assert runs["daily0_hit"]["cache_hit"] and not runs["rerun"]["cache_hit"]
    return runs


def test_status_rows_hold_the_last_run_the_last_success_and_the_counts_of_each_source(
    client: TestClient, history: dict[str, dict[str, Any]]
) -> None:
    rows = export_csv(client, "status")
    found = by_key(rows)

    # One row per model and source: on demand first, then schedule items, then triggers.
    assert list(found) == [
        ("failing", *ON_DEMAND),
        ("failing", "failing/hourly", "0", ""),
        ("noop", *ON_DEMAND),
        ("noop", "noop/daily", "0", ""),
        ("noop", "noop/daily", "1", ""),
        ("noop", "", "", "noop/fresh-data"),
        ("sleeper", *ON_DEMAND),
        ("slow", *ON_DEMAND),
    ]
    on_demand = found["noop", *ON_DEMAND]
    rerun_run = get_run(client, history["rerun"]["id"])
    assert on_demand["last_run_id"] == str(rerun_run["id"])
    assert on_demand["last_status"] == "succeeded"
    assert on_demand["last_started_at"] == rerun_run["started_at"]
    assert on_demand["last_finished_at"] == rerun_run["finished_at"]
    assert on_demand["last_attempts"] == "1"
    assert on_demand["last_error"] == ""
    assert on_demand["last_success_run_id"] == str(rerun_run["id"])
    assert on_demand["last_success_at"] == rerun_run["finished_at"]
    assert json.loads(on_demand["params"]) == {"n": 1, "label": ""}
    # Three computed successes (the rerun of an on-demand run recomputed, on demand), one cache hit.
    assert counts(on_demand) == (3, 1, 0, 0, 0)

    daily0 = found["noop", "noop/daily", "0", ""]
    hit = history["daily0_hit"]
    assert (daily0["last_run_id"], daily0["last_success_run_id"]) == (str(hit["id"]), str(hit["id"]))
    assert daily0["last_attempts"] == "0"  # a cache hit computed nothing
    assert daily0["last_success_at"] == hit["finished_at"]
    assert json.loads(daily0["params"]) == {"n": 10, "label": ""}
    assert counts(daily0) == (1, 1, 0, 0, 0)
    daily1 = found["noop", "noop/daily", "1", ""]
    assert daily1["last_run_id"] == str(history["daily1_rerun_again"]["id"])
    assert counts(daily1) == (3, 0, 0, 0, 0)
    assert counts(found["noop", "", "", "noop/fresh-data"]) == (1, 0, 0, 0, 0)

    for failed_row, failed_run in (
        (found["failing", *ON_DEMAND], history["failed"]),
        (found["failing", "failing/hourly", "0", ""], history["hourly0"]),
    ):
        assert failed_row["last_run_id"] == str(failed_run["id"])
        assert failed_row["last_status"] == "failed"
        assert failed_row["last_attempts"] == "2"  # `failing` is retried once
        assert "exit status 3" in failed_row["last_error"]
        assert failed_row["last_success_run_id"] == failed_row["last_success_at"] == ""
        assert counts(failed_row) == (0, 0, 1, 0, 0)
    slow = found["slow", *ON_DEMAND]
    assert (slow["last_status"], counts(slow)) == ("timed_out", (0, 0, 0, 1, 0))
    assert "timed out" in slow["last_error"]
    sleeper = found["sleeper", *ON_DEMAND]
    assert (sleeper["last_status"], counts(sleeper)) == ("cancelled", (0, 0, 0, 0, 1))
    assert sleeper["last_finished_at"] == history["cancelled"]["finished_at"]

    for row in rows:
        for field in ("last_started_at", "last_finished_at", "last_success_at"):
            assert row[field] == "" or ISO_UTC.match(row[field]), (field, row[field])


def test_json_and_csv_hold_the_same_rows(client: TestClient, history: dict[str, dict[str, Any]]) -> None:
    for kind in ("status", "runtimes"):
        as_json = export_json(client, kind)
        as_csv = export_csv(client, kind)

        assert len(as_json) == len(as_csv)
        for item, line in zip(as_json, as_csv, strict=True):
            for field, value in item.items():
                if value is None:
                    assert line[field] == "", field
                elif isinstance(value, dict):
                    assert json.loads(line[field]) == value
                elif isinstance(value, float):
                    assert float(line[field]) == value
                else:
                    assert line[field] == str(value), field
    first = export_json(client, "status")[0]
    assert first["item"] is None and first["schedule"] is None  # nulls in JSON, empty cells in CSV


def test_runtimes_are_the_newest_computed_successes_of_each_source(
    client: TestClient, platform: Platform, workspace: Path
) -> None:
    origin = "schedule:sleeper/nightly#0"
    first = scheduled(client, platform, "sleeper", {"seconds": 0.2}, origin)
    second = scheduled(client, platform, "sleeper", {"seconds": 0.8}, origin)
    # Neither a cache hit nor a failed run has a runtime of its own: they leave the row as it is.
    assert scheduled(client, platform, "sleeper", {"seconds": 0.8}, origin)["cache_hit"]
    assert scheduled(client, platform, "failing", {}, "schedule:failing/nightly#0")["status"] == "failed"
    alone = wait_for_run(client.get, submit(client, "noop", {"n": 5})["id"])

    rows = by_key(export_csv(client, "runtimes"))

    nightly = rows["sleeper", "sleeper/nightly", "0", ""]
    assert nightly["runs"] == "2"
    assert nightly["current_run_id"] == str(second["id"])
    assert nightly["previous_run_id"] == str(first["id"])
    assert float(nightly["current_runtime_s"]) == pytest.approx(seconds(second), abs=1e-3)
    assert float(nightly["previous_runtime_s"]) == pytest.approx(seconds(first), abs=1e-3)
    assert float(nightly["change"]) == pytest.approx(seconds(second) / seconds(first), rel=1e-2)
    assert float(nightly["change"]) > 1  # it slept four times as long
    assert float(nightly["mean_runtime_s"]) == pytest.approx((seconds(first) + seconds(second)) / 2, abs=2e-3)

    noop = rows["noop", *ON_DEMAND]
    assert (noop["runs"], noop["current_run_id"]) == ("1", str(alone["id"]))
    assert float(noop["current_runtime_s"]) == pytest.approx(seconds(alone), abs=1e-3)
    assert noop["previous_run_id"] == noop["previous_runtime_s"] == noop["change"] == ""
    assert float(noop["mean_runtime_s"]) == pytest.approx(seconds(alone), abs=2e-3)

    failing = rows["failing", "failing/nightly", "0", ""]
    assert failing["runs"] == "0"
    assert all(failing[field] == "" for field in ("current_runtime_s", "previous_runtime_s", "mean_runtime_s"))


def test_filters_declared_items_and_unknown_names(client: TestClient, platform: Platform, workspace: Path) -> None:
    write_model(
        workspace,
        "yearly",
        'command: ["python", "-c", "pass"]\n'
        "params: {type: object, properties: {n: {type: integer}}}\n"
        "schedules:\n"
        '  - {name: new-year, cron: "0 0 1 1 *", each: [{n: 1}, {n: 2}]}\n'
        '  - {name: paused, cron: "0 0 1 1 *", enabled: false}\n',
    )
    ran = scheduled(client, platform, "yearly", {"n": 2}, "schedule:yearly/new-year#1")
    # Schedule names may hold '_', which LIKE reads as any character: it must match only itself.
    underscored = scheduled(client, platform, "noop", {"n": 30}, "schedule:noop/a_b#0")
    scheduled(client, platform, "noop", {"n": 31}, "schedule:noop/axb#0")
    wait_for_run(client.get, submit(client, "noop", {"n": 32})["id"])

    rows = export_csv(client, "status", model="yearly")

    # Item 0 never ran: it is a row all the same; the disabled schedule is not.
    assert [(r["schedule"], r["item"], r["last_run_id"]) for r in rows] == [
        ("yearly/new-year", "0", ""),
        ("yearly/new-year", "1", str(ran["id"])),
    ]
    assert json.loads(rows[0]["params"]) == {"n": 1}
    assert counts(rows[0]) == (0, 0, 0, 0, 0)
    runtimes = export_csv(client, "runtimes", model="yearly")
    assert [(r["item"], r["runs"]) for r in runtimes] == [("0", "0"), ("1", "1")]

    for name in ("new-year", "yearly/new-year"):
        assert [r["item"] for r in export_csv(client, "status", schedule=name)] == ["0", "1"]
    only = export_csv(client, "status", schedule="a_b")
    assert [(r["schedule"], r["last_run_id"]) for r in only] == [("noop/a_b", str(underscored["id"]))]
    assert [r["schedule"] for r in export_csv(client, "runtimes", model="noop")] == ["", "noop/a_b", "noop/axb"]
    assert export_csv(client, "status", model="noop", schedule="yearly/new-year") == []  # both known, nothing in both

    for kind, query, message in (
        ("status", {"model": "nope"}, "unknown model 'nope'"),
        ("runtimes", {"model": "nope", "format": "csv"}, "unknown model 'nope'"),
        ("status", {"schedule": "nope"}, "unknown schedule 'nope'"),
        ("runtimes", {"schedule": "noop/new-year"}, "unknown schedule 'noop/new-year'"),
    ):
        response = client.get(f"{API}/{kind}", params=query)
        assert response.status_code == 404, (kind, query)
        assert response.json() == {"detail": message}
    response = client.get(f"{API}/status", params={"format": "xml"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "format"]


def test_a_pipeline_is_one_row_and_its_steps_are_none(client: TestClient, workspace: Path) -> None:
    write_model(
        workspace,
        "twostep",
        "steps:\n"
        '  prepare: {command: ["python", "-c", "pass"]}\n'
        '  summarise: {command: ["python", "-c", "pass"], needs: [prepare]}\n',
    )
    pipeline = wait_for_run(client.get, submit(client, "twostep")["id"])
    assert pipeline["status"] == "succeeded", pipeline["error"]

    rows = export_csv(client, "status")

    assert [(r["model"], r["last_run_id"], counts(r)) for r in rows] == [
        ("twostep", str(pipeline["id"]), (1, 0, 0, 0, 0))
    ]
    runtimes = export_csv(client, "runtimes")
    assert [(r["runs"], r["current_run_id"]) for r in runtimes] == [("1", str(pipeline["id"]))]
    assert float(runtimes[0]["current_runtime_s"]) == pytest.approx(seconds(pipeline), abs=1e-3)


def test_no_runs_gives_a_header_and_no_rows(client: TestClient) -> None:
    response = client.get(f"{API}/status", params={"format": "csv"})

    assert response.text == ",".join(StatusRow.model_fields) + "\n"
    assert export_json(client, "runtimes") == []


def test_the_export_routes_are_documented(client: TestClient) -> None:
    openapi = client.get("/openapi.json").json()

    for kind in ("status", "runtimes"):
        operation = openapi["paths"][f"{API}/{kind}"]["get"]
        assert operation["summary"]
        assert {"200", "404", "422"} <= set(operation["responses"])
        assert set(operation["responses"]["200"]["content"]) == {"application/json", "text/csv"}
        assert {p["name"] for p in operation["parameters"]} == {"model", "schedule", "format"}
    status_fields = openapi["components"]["schemas"]["StatusRow"]["properties"]
    assert "computed" in status_fields["succeeded"]["description"]
    assert "cache" in status_fields["cache_hits"]["description"]
