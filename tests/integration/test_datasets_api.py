"""Datasets over HTTP: listing, versions, syncs (with joining), runs pinned to data versions, the
results lookup, deleting versions, and the errors a client meets, against a real git repository."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from modelrunner.clock import utcnow
from modelrunner.platform import Platform
from tests import data_fixtures, dataset_workspace
from tests.conftest import wait_for_run
from tests.data_fixtures import GIT_EPOCH, GitRepo
from tests.dataset_workspace import commit_with_prefix
from tests.integration.runs_api import wait_for_status, wait_until

# The shared fixtures this module uses; pytest finds them by these names.
git_repo = data_fixtures.git_repo
workspace = dataset_workspace.workspace

API = "/api/v1"


def sync(client: TestClient, dataset: str = "cases", **body: Any) -> dict[str, Any]:
    """Ask for a sync and wait for its end; the finished sync."""
    response = client.post(f"{API}/datasets/{dataset}/sync", json=body)
    assert response.status_code in (200, 202), response.text
    return follow(client, dataset, response.json()["id"])


def follow(client: TestClient, dataset: str, sync_id: int) -> dict[str, Any]:
    """Wait for the end of the sync; the finished sync."""

    def finished() -> dict[str, Any] | None:
        row: dict[str, Any] = client.get(f"{API}/datasets/{dataset}/syncs/{sync_id}").json()
        return row if row["status"] in ("succeeded", "failed") else None

    return wait_until(finished, 20, f"sync {sync_id} of {dataset}")


def submit(client: TestClient, params: dict[str, Any] | None = None, **body: Any) -> dict[str, Any]:
    response = client.post(f"{API}/models/counter/runs", json={"params": params or {}, **body})
    assert response.status_code in (200, 201), response.text
    run: dict[str, Any] = response.json()
    return run


def error_of(response: Any) -> tuple[list[str], str]:
    """(loc, msg) of a 422 answer: the field it names and what is wrong."""
    assert response.status_code == 422, response.text
    first = response.json()["detail"][0]
    return [str(part) for part in first["loc"]], str(first["msg"])


def cases_csv(rows: int) -> str:
    return "".join(f"2024-01-{day:02d},{day * 3}\n" for day in range(1, rows + 1))


@pytest.fixture
def two_versions(git_repo: GitRepo) -> tuple[str, str]:
    """Two commits touching data/ (and one between them that does not): their shas, oldest first."""
    first = git_repo.commit({"data/cases.csv": cases_csv(2)}, "two days")
    git_repo.commit({"README.md": "not data"}, "docs only")
    second = git_repo.commit({"data/cases.csv": cases_csv(3), "data/notes.txt": "x"}, "three days")
    return first, second


def test_datasets_are_listed_synced_and_their_versions_shown(client: TestClient, two_versions: tuple[str, str]) -> None:
    first, second = two_versions
    before = client.get(f"{API}/datasets").json()
    assert before == [
        {
            "name": "cases",
            "source": "git",
            "description": "Cases",
            "poll": None,
            "version_count": 0,
            "newest": None,
            "last_sync": None,
        }
    ]

    accepted = client.post(f"{API}/datasets/cases/sync")
    assert accepted.status_code == 202
    assert accepted.json()["joined"] is False
    assert accepted.json()["status"] in ("queued", "running", "succeeded")
    finished = follow(client, "cases", accepted.json()["id"])
    assert (finished["status"], finished["added"], finished["reason"]) == ("succeeded", 2, "request"), finished
    assert finished["progress"] == {"fraction": 1.0, "message": f"2 new versions, newest {second[:12]}"}

    listed = client.get(f"{API}/datasets").json()[0]
    assert listed["version_count"] == 2
    assert listed["newest"]["version"] == second
    assert listed["last_sync"]["status"] == "succeeded"
    assert listed["last_sync"]["finished_at"] is not None

    detail = client.get(f"{API}/datasets/cases").json()
    assert detail["spec"]["source"] == "git"
    assert detail["spec"]["branch"] == "main"
    assert detail["spec"]["paths"] == ["data"]
    assert detail["newest"]["version"] == second

    versions = client.get(f"{API}/datasets/cases/versions").json()
    assert [v["version"] for v in versions] == [second, first]  # newest first; the docs commit is no version
    assert dt.datetime.fromisoformat(versions[0]["time"]) == GIT_EPOCH + dt.timedelta(minutes=3)
    assert versions[0]["file_count"] == 2
    assert versions[0]["total_size"] == len(cases_csv(3)) + 1
    assert versions[0]["summary"] == "three days"
    assert [v["version"] for v in client.get(f"{API}/datasets/cases/versions?limit=1&offset=1").json()] == [first]

    shown = client.get(f"{API}/datasets/cases/versions/{second[:7]}").json()
    assert shown["version"] == second
    assert shown["files"] == [
        {"path": "data/cases.csv", "size": len(cases_csv(3))},
        {"path": "data/notes.txt", "size": 1},
    ]
    assert shown["discovered_at"] is not None

    again = sync(client)
    assert (again["status"], again["added"]) == ("succeeded", 0)
    syncs = client.get(f"{API}/datasets/cases/syncs").json()
    assert syncs[0]["id"] == again["id"]  # newest first
    assert all(s["reason"] == "request" for s in syncs)


def test_a_sync_requested_while_one_is_in_progress_joins_it(
    client: TestClient, platform: Platform, two_versions: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    claim = platform.syncs.claim

    def held_claim(sync_id: int) -> bool:
        gate.wait(20)  # the poller takes the sync only once the test has asked twice
        return claim(sync_id)

    monkeypatch.setattr(platform.syncs, "claim", held_claim)
    try:
        first = client.post(f"{API}/datasets/cases/sync", json={"all": True})
        second = client.post(f"{API}/datasets/cases/sync", json={})
    finally:
        gate.set()
    assert (first.status_code, first.json()["joined"], first.json()["walk_all"]) == (202, False, True)
    assert (second.status_code, second.json()["joined"]) == (200, True)
    assert second.json()["id"] == first.json()["id"]
    finished = follow(client, "cases", first.json()["id"])
    assert (finished["status"], finished["added"]) == ("succeeded", 2)
    assert len(client.get(f"{API}/datasets/cases/syncs").json()) == 1


def test_runs_use_the_newest_version_or_a_pinned_prefix(client: TestClient, git_repo: GitRepo) -> None:
    git_repo.commit({"data/cases.csv": cases_csv(2)}, "first")
    refused = client.post(f"{API}/models/counter/runs", json={})
    assert refused.status_code == 409
    assert "modelrunner data sync cases" in refused.json()["detail"]

    first = git_repo.head()
    second = git_repo.commit({"data/cases.csv": cases_csv(5)}, "second")
    sync(client)
    assert client.get(f"{API}/models/counter").json()["inputs"] == {"cases": "cases"}

    newest = submit(client)
    assert newest["inputs"] == {"cases": {"dataset": "cases", "version": second}}
    done = wait_for_run(client.get, newest["id"])
    assert done["status"] == "succeeded", done
    assert client.get(done["outputs"][0]["url"]).json() == {"rows": 5, "n": 0}

    pinned = submit(client, inputs={"cases": first[:6].upper()})
    assert pinned["submission"] == "created"
    assert pinned["inputs"]["cases"]["version"] == first
    assert client.get(wait_for_run(client.get, pinned["id"])["outputs"][0]["url"]).json()["rows"] == 2
    hit = submit(client, inputs={"cases": first})
    assert (hit["submission"], hit["source_run_id"]) == ("cache_hit", pinned["id"])
    assert hit["inputs"] == pinned["inputs"]

    shown = client.get(f"{API}/runs/{pinned['id']}").json()
    assert shown["inputs"] == {"cases": {"dataset": "cases", "version": first}}
    listed = {r["id"]: r for r in client.get(f"{API}/runs?model=counter").json()["items"]}
    assert listed[newest["id"]]["inputs"]["cases"]["version"] == second

    # A pin that matches nothing, is too short, names no input, or matches two versions.
    unknown = client.post(f"{API}/models/counter/runs", json={"inputs": {"cases": "f" * 12}})
    loc, msg = error_of(unknown)
    assert loc[-2:] == ["inputs", "cases"] and "has no version" in msg
    loc, msg = error_of(client.post(f"{API}/models/counter/runs", json={"inputs": {"cases": "ab"}}))
    assert loc[-2:] == ["inputs", "cases"] and "at least 4 characters" in msg
    loc, msg = error_of(client.post(f"{API}/models/counter/runs", json={"inputs": {"regions": first}}))
    assert loc[-2:] == ["inputs", "regions"] and "no input 'regions'" in msg
    twin = commit_with_prefix(git_repo, {"data/cases.csv": cases_csv(6)}, second[:4], utcnow())
    sync(client)
    loc, msg = error_of(client.post(f"{API}/models/counter/runs", json={"inputs": {"cases": twin[:4]}}))
    assert loc[-2:] == ["inputs", "cases"] and "matches several versions" in msg
    loc, msg = error_of(client.get(f"{API}/datasets/cases/versions/{twin[:4]}"))
    assert loc == ["path", "version"] and "matches several versions" in msg
    assert client.get(f"{API}/datasets/cases/versions/{twin[:12]}").json()["version"] == twin


def test_results_are_looked_up_on_the_newest_data_within_max_age(client: TestClient, git_repo: GitRepo) -> None:
    old = git_repo.commit({"data/cases.csv": cases_csv(2)}, "old data")  # 2024: long ago
    sync(client)
    computed = wait_for_run(client.get, submit(client, {"n": 1})["id"])
    assert computed["status"] == "succeeded"

    found = client.get(f"{API}/models/counter/results?n=1")
    assert found.status_code == 200, found.text
    assert found.json()["id"] == computed["id"]
    assert found.json()["outputs"][0]["path"] == "count.json"
    assert found.json()["inputs"]["cases"]["version"] == old
    missing = client.get(f"{API}/models/counter/results?n=2")
    assert missing.status_code == 404
    assert "no result of 'counter'" in missing.json()["detail"]
    too_old = client.get(f"{API}/models/counter/results", params={"n": "1", "max_age": "2d"})
    assert too_old.status_code == 404
    assert "max_age=2d" in too_old.json()["detail"]

    fresh = git_repo.commit({"data/cases.csv": cases_csv(4)}, "fresh data", when=utcnow() - dt.timedelta(hours=1))
    sync(client)
    # No result on the fresh data yet: the newest result is on the old data, too old for 2d.
    assert client.get(f"{API}/models/counter/results?n=1").json()["id"] == computed["id"]
    assert client.get(f"{API}/models/counter/results?n=1&max_age=172800").status_code == 404

    # A submit with max_age finds no result on recent enough data, so it computes on the fresh data.
    recomputed = submit(client, {"n": 1}, max_age="2d")
    assert recomputed["submission"] == "created"
    assert recomputed["inputs"]["cases"]["version"] == fresh
    wait_for_run(client.get, recomputed["id"])
    assert client.get(f"{API}/models/counter/results?n=1&max_age=2d").json()["id"] == recomputed["id"]
    assert client.get(f"{API}/models/counter/results?n=1&input.cases={old[:8]}").json()["id"] == computed["id"]
    # Within max_age a cached result on fresh data answers a submit; a result on old data does not.
    assert submit(client, {"n": 1}, max_age=3 * 3600)["submission"] == "cache_hit"

    # What a client gets wrong is named.
    loc, msg = error_of(client.get(f"{API}/models/counter/results?n=1&bogus=3"))
    assert loc[0] == "query" and "bogus" in msg
    loc, msg = error_of(client.get(f"{API}/models/counter/results?n=one"))
    assert loc == ["query", "params", "n"] and "not of type 'integer'" in msg
    loc, msg = error_of(client.get(f"{API}/models/counter/results?max_age=soon"))
    assert loc == ["query", "max_age"] and "'30m'" in msg
    loc, msg = error_of(client.get(f"{API}/models/counter/results?n=1&n=2"))
    assert loc == ["query", "n"] and "more than once" in msg
    loc, msg = error_of(client.get(f"{API}/models/counter/results?input.regions=abcd"))
    assert loc[-2:] == ["inputs", "regions"]
    loc, _ = error_of(client.get(f"{API}/models/counter/results?input.cases=zzzzzz"))
    assert loc[-2:] == ["inputs", "cases"]
    assert client.get(f"{API}/models/nope/results").status_code == 404


def test_a_model_without_inputs_is_looked_up_by_age_of_its_result(client: TestClient) -> None:
    response = client.post(f"{API}/models/noop/runs", json={"params": {"n": 7}})
    wait_for_run(client.get, response.json()["id"])
    assert client.get(f"{API}/models/noop/results?n=7&max_age=1h").json()["id"] == response.json()["id"]
    assert client.get(f"{API}/models/noop/results?n=7&label=007").status_code == 404  # a string stays a string
    assert client.get(f"{API}/models/noop/results?n=7&max_age=0").status_code == 404


def test_deleting_versions_is_refused_while_a_run_uses_them(client: TestClient, two_versions: tuple[str, str]) -> None:
    sync(client)
    busy = submit(client, {"sleep": 30})
    wait_for_status(client, busy["id"], "running")
    refused = client.delete(f"{API}/datasets/cases/versions")
    assert refused.status_code == 409
    assert f"({busy['id']})" in refused.json()["detail"]
    assert "cancel them first" in refused.json()["detail"]
    assert client.get(f"{API}/datasets").json()[0]["version_count"] == 2

    client.post(f"{API}/runs/{busy['id']}/cancel")
    wait_for_status(client, busy["id"], "cancelled")
    deleted = client.delete(f"{API}/datasets/cases/versions")
    assert deleted.status_code == 200
    assert deleted.json() == {"deleted": 2}
    assert client.get(f"{API}/datasets/cases/versions").json() == []
    assert client.get(f"{API}/runs/{busy['id']}").json()["inputs"]["cases"]["version"] == two_versions[1]
    assert sync(client)["added"] == 2  # recorded again from the source


def test_the_dataset_spec_never_shows_credentials(client: TestClient, workspace: Path) -> None:
    spec = yaml.safe_load((workspace / "modelrunner.yaml").read_text())
    spec["datasets"]["bucket"] = {
        "source": "files",
        "url": "s3://bucket/cases/",
        "options": {"endpoint_url": "http://127.0.0.1:9", "secret": "hunter2"},
    }
    spec["datasets"]["remote"] = {"source": "git", "repo": "https://someone:t0ken@example.org/data.git", "poll": "1d"}
    # A token given as the user name (as forges hand them out), and one in a query string.
    spec["datasets"]["forge"] = {"source": "git", "repo": "https://ghp_t0ken@example.org/data.git"}
    spec["datasets"]["feed"] = {"source": "http", "url": "https://example.org/cases.csv?key=t0ken"}
    (workspace / "modelrunner.yaml").write_text(yaml.safe_dump(spec))

    bucket = client.get(f"{API}/datasets/bucket")
    assert bucket.status_code == 200
    assert bucket.json()["spec"]["option_keys"] == ["endpoint_url", "secret"]
    assert "hunter2" not in bucket.text and "127.0.0.1:9" not in bucket.text
    remote = client.get(f"{API}/datasets/remote").json()
    assert remote["spec"]["repo"] == "https://***@example.org/data.git"
    assert client.get(f"{API}/datasets/forge").json()["spec"]["repo"] == "https://***@example.org/data.git"
    assert client.get(f"{API}/datasets/feed").json()["spec"]["url"] == "https://example.org/cases.csv"
    assert remote["poll"] == 86400
    assert "t0ken" not in client.get(f"{API}/datasets").text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/datasets/nope"),
        ("GET", "/datasets/nope/versions"),
        ("GET", "/datasets/nope/versions/abcd"),
        ("DELETE", "/datasets/nope/versions"),
        ("POST", "/datasets/nope/sync"),
        ("GET", "/datasets/nope/syncs"),
        ("GET", "/datasets/nope/syncs/1"),
    ],
)
def test_an_unknown_dataset_is_404_everywhere(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, f"{API}{path}")
    assert response.status_code == 404
    assert response.json()["detail"].startswith("unknown dataset 'nope'")


def test_bad_requests_name_what_is_wrong(client: TestClient, two_versions: tuple[str, str]) -> None:
    finished = sync(client)
    assert error_of(client.get(f"{API}/datasets/cases/versions?limit=0"))[0] == ["query", "limit"]
    assert error_of(client.get(f"{API}/datasets/cases/versions?offset=-1"))[0] == ["query", "offset"]
    assert error_of(client.get(f"{API}/datasets/cases/syncs?limit=x"))[0] == ["query", "limit"]
    assert error_of(client.post(f"{API}/datasets/cases/sync", json={"all": "maybe"}))[0] == ["body", "all"]
    assert error_of(client.post(f"{API}/datasets/cases/sync", json={"everything": True}))[0] == ["body", "everything"]
    loc, msg = error_of(client.get(f"{API}/datasets/cases/versions/ab"))
    assert loc == ["path", "version"] and "at least 4 characters" in msg
    unknown = client.get(f"{API}/datasets/cases/versions/{'0' * 40}")
    assert unknown.status_code == 404 and "has no version" in unknown.json()["detail"]
    assert client.get(f"{API}/datasets/cases/syncs/{finished['id'] + 100}").status_code == 404
    assert client.get(f"{API}/datasets/cases/syncs/x").status_code == 422
    loc, msg = error_of(client.post(f"{API}/models/counter/runs", json={"max_age": "soon"}))
    assert loc == ["body", "max_age"] and "'30m'" in msg
    assert error_of(client.post(f"{API}/models/counter/runs", json={"max_age": -1}))[0] == ["body", "max_age"]
    assert error_of(client.post(f"{API}/models/counter/runs", json={"inputs": {"cases": 7}}))[0][:2] == [
        "body",
        "inputs",
    ]


@pytest.fixture
def openapi(client: TestClient) -> Iterator[dict[str, Any]]:
    yield client.get("/openapi.json").json()


def test_every_dataset_route_is_documented(openapi: dict[str, Any]) -> None:
    for path, operations in openapi["paths"].items():
        if "/datasets" not in path and not path.endswith("/results"):
            continue
        for operation in operations.values():
            assert operation.get("summary"), path
            assert "404" in operation["responses"] or path == "/api/v1/datasets", path
    submit_body = openapi["components"]["schemas"]["SubmitRequest"]["properties"]
    assert "inputs" in submit_body and "data no older than" in submit_body["max_age"]["description"]
