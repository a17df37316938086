"""Data versions underneath the API: what a sync records (and what it leaves alone when the source
fails), runs on a pinned version of a folder that has changed since, the local cache of versions,
the poller, and ``max_age`` measured on the data."""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from modelrunner.clock import utcnow
from modelrunner.data.sync import VERSION_ADDED
from modelrunner.platform import Platform
from modelrunner.store import data_queries
from modelrunner.store.tables import EventRow
from tests import data_fixtures
from tests.conftest import wait_for_run
from tests.data_fixtures import S3, GitRepo, HttpServer
from tests.dataset_workspace import build_workspace, git_dataset

git_repo = data_fixtures.git_repo
moto_server = data_fixtures.moto_server
s3 = data_fixtures.s3
http_server = data_fixtures.http_server

# Copies its `drop` input to its outputs; with `scribble`, then writes into its inputs folder.
COPIER_SPEC = {
    "name": "copier",
    "command": ["python", "copier.py"],
    "params": {"type": "object", "properties": {"scribble": {"type": "boolean", "default": False}}},
    "inputs": {"drop": "drop"},
}
COPIER_CODE = """\
import shutil
from modelrunner import job

drop = job.inputs() / "drop"
shutil.copytree(drop, job.outputs() / "drop")
if job.params()["scribble"]:
    for path in drop.rglob("*"):
        if path.is_file():
            path.write_text("scribbled")
"""


@pytest.fixture
def drop_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "cases.csv").write_text("day,cases\n1,10\n")
    return folder


@pytest.fixture
def workspace(tmp_path: Path, git_repo: GitRepo, drop_folder: Path) -> Path:
    root = build_workspace(
        tmp_path / "workspace",
        {"cases": git_dataset(git_repo), "drop": {"source": "files", "url": str(drop_folder)}},
    )
    (root / "copier").mkdir()
    (root / "copier" / "model.yaml").write_text(yaml.safe_dump(COPIER_SPEC))
    (root / "copier" / "copier.py").write_text(COPIER_CODE)
    return root


def version_events(platform: Platform) -> list[dict[str, Any]]:
    with platform.database.read() as session:
        return [e.data for e in session.scalars(select(EventRow).where(EventRow.type == VERSION_ADDED))]


def recorded(platform: Platform, dataset: str = "cases") -> list[str]:
    with platform.database.read() as session:
        return [row.version for row in data_queries.versions_of(session, dataset, offset=0, limit=100)]


def run_of(client: TestClient, model: str, **body: Any) -> dict[str, Any]:
    response = client.post(f"/api/v1/models/{model}/runs", json=body)
    assert response.status_code in (200, 201), response.text
    return wait_for_run(client.get, response.json()["id"])


def test_a_sync_records_each_commit_touching_the_paths_once_with_an_event(
    client: TestClient, platform: Platform, git_repo: GitRepo
) -> None:
    first = git_repo.commit({"data/cases.csv": "day,cases\n1,10\n"}, "first cases")
    git_repo.commit({"README.md": "about the data"}, "docs only")
    second = git_repo.commit({"data/cases.csv": "day,cases\n1,10\n2,12\n"}, "second cases")

    synced = platform.syncs.sync("cases")
    again = platform.syncs.sync("cases")

    assert (synced.status, synced.added, again.status, again.added) == ("succeeded", 2, "succeeded", 0)
    assert recorded(platform) == [second, first]
    events = version_events(platform)
    assert [(e["dataset"], e["version"], e["summary"]) for e in events] == [
        ("cases", first, "first cases"),
        ("cases", second, "second cases"),
    ]


def test_a_failing_source_reports_what_failed_and_keeps_the_versions(
    client: TestClient, platform: Platform, git_repo: GitRepo
) -> None:
    sha = git_repo.commit({"data/cases.csv": "day,cases\n1,10\n"}, "cases")
    platform.syncs.sync("cases")
    shutil.move(git_repo.path, git_repo.path.with_name("moved-away"))

    failed = platform.syncs.sync("cases")

    assert failed.status == "failed"
    assert "cases" in (failed.error or "") and str(git_repo.path) in (failed.error or "")
    assert recorded(platform) == [sha]
    assert len(version_events(platform)) == 1


def test_submitting_before_any_version_is_known_says_how_to_sync(client: TestClient) -> None:
    response = client.post("/api/v1/models/counter/runs", json={})

    assert response.status_code == 409
    assert "modelrunner data sync cases" in response.json()["detail"]


def test_a_pinned_version_of_a_folder_that_changed_since_is_reproduced(
    client: TestClient, platform: Platform, drop_folder: Path
) -> None:
    platform.syncs.sync("drop")
    (old,) = recorded(platform, "drop")
    (drop_folder / "cases.csv").write_text("day,cases\n1,10\n2,99\n")
    (drop_folder / "extra.csv").write_text("new file\n")
    platform.syncs.sync("drop")
    new, _ = recorded(platform, "drop")
    # Only the artifact store still holds the old state: the local cache and the folder do not.
    platform.data_cache.drop("drop")

    on_old = run_of(client, "copier", inputs={"drop": old[:8]})
    on_new = run_of(client, "copier")

    assert on_old["inputs"] == {"drop": {"dataset": "drop", "version": old}}
    assert sorted(o["path"] for o in on_old["outputs"]) == ["drop/cases.csv"]
    assert client.get(on_old["outputs"][0]["url"]).text == "day,cases\n1,10\n"
    assert on_new["inputs"]["drop"]["version"] == new
    assert sorted(o["path"] for o in on_new["outputs"]) == ["drop/cases.csv", "drop/extra.csv"]


def redeclare_drop(workspace: Path, dataset: dict[str, Any]) -> None:
    spec = yaml.safe_load((workspace / "modelrunner.yaml").read_text())
    spec["datasets"]["drop"] = dataset
    (workspace / "modelrunner.yaml").write_text(yaml.safe_dump(spec))


def test_a_run_reads_its_version_of_an_s3_prefix(
    client: TestClient, platform: Platform, workspace: Path, s3: S3
) -> None:
    bucket = s3.create_bucket()
    s3.put(bucket, "stations/a.csv", "a,1\n")
    s3.put(bucket, "stations/north/b.csv", "b,1\n")
    s3.put(bucket, "elsewhere.csv", "not under the prefix\n")
    redeclare_drop(workspace, {"source": "files", "url": f"s3://{bucket}/stations", "options": s3.options})

    first = platform.syncs.sync("drop")
    s3.put(bucket, "stations/a.csv", "a,2\n")
    second = platform.syncs.sync("drop")
    unchanged = platform.syncs.sync("drop")
    old, new = recorded(platform, "drop")[::-1]
    on_old = run_of(client, "copier", inputs={"drop": old})

    assert (first.added, second.added, unchanged.added) == (1, 1, 0)
    assert sorted(o["path"] for o in on_old["outputs"]) == ["drop/a.csv", "drop/north/b.csv"]
    assert client.get(next(o["url"] for o in on_old["outputs"] if o["path"] == "drop/a.csv")).text == "a,1\n"
    assert new != old


def test_a_run_reads_its_version_of_an_http_file(
    client: TestClient, platform: Platform, workspace: Path, http_server: HttpServer
) -> None:
    http_server.write("population.csv", "region,people\nnorth,100\n")
    redeclare_drop(workspace, {"source": "http", "url": http_server.url("population.csv")})

    platform.syncs.sync("drop")
    unchanged = platform.syncs.sync("drop")
    run = run_of(client, "copier")

    assert unchanged.added == 0 and http_server.statuses("population.csv") == [200, 304]
    assert [o["path"] for o in run["outputs"]] == ["drop/population.csv"]
    assert client.get(run["outputs"][0]["url"]).text == "region,people\nnorth,100\n"


def test_a_model_writing_into_its_inputs_does_not_change_the_version_for_later_runs(
    client: TestClient, platform: Platform
) -> None:
    platform.syncs.sync("drop")

    scribbler = run_of(client, "copier", params={"scribble": True})
    reader = run_of(client, "copier", params={"scribble": False})

    assert scribbler["status"] == reader["status"] == "succeeded"
    assert client.get(reader["outputs"][0]["url"]).text == "day,cases\n1,10\n"


def test_runs_needing_the_same_version_at_once_fetch_it_once(
    client: TestClient, platform: Platform, git_repo: GitRepo, caplog: pytest.LogCaptureFixture
) -> None:
    sha = git_repo.commit({"data/cases.csv": "day,cases\n1,10\n"}, "cases")
    platform.syncs.sync("cases")
    caplog.set_level(logging.INFO, logger="modelrunner.data")
    folders: list[Path] = []
    start = threading.Barrier(6)

    def need() -> None:
        start.wait()
        folders.append(platform.data_cache.folder("cases", sha))

    threads = [threading.Thread(target=need) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    fetches = [r for r in caplog.records if "fetched version" in r.getMessage()]
    assert len(fetches) == 1
    assert len(set(folders)) == 1 and (folders[0] / "data" / "cases.csv").read_text() == "day,cases\n1,10\n"


@pytest.fixture
def polled_workspace(workspace: Path, git_repo: GitRepo) -> Path:
    spec = yaml.safe_load((workspace / "modelrunner.yaml").read_text())
    spec["datasets"]["cases"]["poll"] = 1
    (workspace / "modelrunner.yaml").write_text(yaml.safe_dump(spec))
    return workspace


def test_serve_polls_a_dataset_when_its_interval_has_passed(
    polled_workspace: Path, client: TestClient, platform: Platform, git_repo: GitRepo
) -> None:
    first = git_repo.commit({"data/cases.csv": "day,cases\n1,10\n"}, "first")
    _wait_until(lambda: recorded(platform) == [first], 10)
    second = git_repo.commit({"data/cases.csv": "day,cases\n1,10\n2,12\n"}, "second")
    _wait_until(lambda: recorded(platform) == [second, first], 10)

    with platform.database.read() as session:
        reasons = {s.reason for s in data_queries.syncs_of(session, "cases", limit=100)}
    assert reasons == {"poll"}


def test_max_age_accepts_results_on_recent_enough_data_and_never_recomputes_the_newest(
    client: TestClient, platform: Platform, git_repo: GitRepo
) -> None:
    now = utcnow()
    old = git_repo.commit({"data/cases.csv": "day,cases\n1,10\n"}, "old", when=now - dt.timedelta(days=10))
    new = git_repo.commit({"data/cases.csv": "day,cases\n1,10\n2,12\n"}, "new", when=now - dt.timedelta(hours=1))
    platform.syncs.sync("cases")
    on_old = run_of(client, "counter", inputs={"cases": old})

    def submit(max_age: str) -> dict[str, Any]:
        response = client.post("/api/v1/models/counter/runs", json={"max_age": max_age})
        assert response.status_code in (200, 201), response.text
        return response.json()

    # The old data is too old for a day: the newest data is computed.
    fresh = submit("1d")
    wait_for_run(client.get, fresh["id"])
    # Within 30 days both versions qualify: the newest data's result answers.
    month = submit("30d")
    # No data is a minute old: the newest data's result is the freshest there can be, so no new run.
    minute = submit("1m")

    assert on_old["inputs"]["cases"]["version"] == old
    assert (fresh["submission"], fresh["inputs"]["cases"]["version"]) == ("created", new)
    assert (month["submission"], month["source_run_id"]) == ("cache_hit", fresh["id"])
    assert (minute["submission"], minute["source_run_id"]) == ("cache_hit", fresh["id"])


def _wait_until(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)
