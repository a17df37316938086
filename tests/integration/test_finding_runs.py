"""Finding runs: lists bounded by when runs were submitted (API and Runs page), and runtime
exports that time only runs that computed their whole result."""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from modelrunner.platform import Platform
from tests.conftest import TESTS, wait_for_run
from tests.identities import add_user
from tests.integration.runs_api import submit
from tests.integration.test_export import export_csv, export_json
from tests.integration.test_web_run_lists import PASSWORD, signed_in

API = "/api/v1"


def listed(client: TestClient, **query: Any) -> list[int]:
    response = client.get(f"{API}/runs", params=query)
    assert response.status_code == 200, response.text
    return [run["id"] for run in response.json()["items"]]


def test_runs_are_listed_since_and_until_a_time_or_a_duration_back(client: TestClient, platform: Platform) -> None:
    older = wait_for_run(client.get, submit(client, "noop", {"n": 1})["id"])
    time.sleep(0.05)
    between = dt.datetime.now(dt.UTC)
    time.sleep(0.05)
    newer = wait_for_run(client.get, submit(client, "noop", {"n": 2})["id"])

    assert listed(client, since=between.isoformat()) == [newer["id"]]
    assert listed(client, until=between.isoformat()) == [older["id"]]
    assert listed(client, since="1d") == [newer["id"], older["id"]]
    assert listed(client, until="1d") == []
    # Combined with the other filters; a time without a zone is UTC.
    naive = between.replace(tzinfo=None).isoformat()
    assert listed(client, since=naive, param="n=1") == []
    assert listed(client, until=naive, param="n=1", status="succeeded") == [older["id"]]

    response = client.get(f"{API}/runs", params={"since": "yesterday"})
    assert response.status_code == 422
    assert "since: 'yesterday' is neither a duration" in response.text

    add_user(platform.database, "ada", admin=True, password=PASSWORD)
    browser = signed_in(TestClient(client.app, follow_redirects=False), "ada")
    page = browser.get("/runs", params={"since": between.isoformat()})
    assert page.status_code == 200
    assert f'href="/runs/{newer["id"]}"' in page.text and f'href="/runs/{older["id"]}"' not in page.text
    assert 'name="since"' in page.text


def test_runtimes_leave_out_partial_reruns_and_count_them(client: TestClient, workspace: Path) -> None:
    shutil.copytree(TESTS / "pipeline_model", workspace / "regional")
    params = {"regions": ["uk", "fr"], "sleep": 0.3}
    full = wait_for_run(client.get, submit(client, "regional", params)["id"])
    assert full["status"] == "succeeded", full["error"]
    response = client.post(f"{API}/runs/{full['id']}/rerun", json={"only": "publish"})
    assert response.status_code == 201, response.text
    partial = wait_for_run(client.get, response.json()["id"])
    assert partial["status"] == "succeeded", partial["error"]
    hit = submit(client, "regional", params)
    assert hit["submission"] == "cache_hit"

    [row] = export_json(client, "runtimes", model="regional")

    # The rerun of one step took a fraction of the time: it is no "current runtime".
    assert (row["runs"], row["current_run_id"], row["previous_run_id"]) == (1, full["id"], None)
    assert (row["partial_runs"], row["cache_hits"]) == (1, 1)
    [line] = export_csv(client, "runtimes", model="regional")
    assert (line["partial_runs"], line["cache_hits"]) == ("1", "1")
