"""GET /api/v1/runs: filters, newest first, and cursor pagination without gaps or duplicates."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelrunner.platform import Platform
from tests.conftest import wait_for_run
from tests.identities import add_user, bearer, token_for
from tests.integration.runs_api import submit


@pytest.fixture
def history(client: TestClient) -> dict[str, list[int]]:
    """Runs in several states: five noop successes, one failure, one cancelled; ids by kind."""
    noop = [submit(client, "noop", {"n": n})["id"] for n in range(5)]
    failed = [submit(client, "no_output")["id"]]
    cancelled = submit(client, "sleeper", {"seconds": 60, "tag": "listed"})["id"]
    assert client.post(f"/api/v1/runs/{cancelled}/cancel").status_code == 200
    for run_id in [*noop, *failed, cancelled]:
        wait_for_run(client.get, run_id)
    return {"noop": noop, "failed": failed, "cancelled": [cancelled]}


def listed(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get("/api/v1/runs", params=params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def newest_first(history: dict[str, list[int]]) -> list[int]:
    return sorted((run_id for kind in history.values() for run_id in kind), reverse=True)


def ids(page: dict[str, Any]) -> list[int]:
    return [item["id"] for item in page["items"]]


def test_no_runs(client: TestClient) -> None:
    assert listed(client) == {"items": [], "next_cursor": None}


def test_all_runs_newest_first(client: TestClient, history: dict[str, list[int]]) -> None:
    page = listed(client)

    everything = newest_first(history)
    assert ids(page) == everything
    assert page["next_cursor"] is None
    created = [item["created_at"] for item in page["items"]]
    assert created == sorted(created, reverse=True)
    item = page["items"][0]
    assert {"id", "model", "status", "progress", "params", "cache_key", "created_at", "error"} <= set(item)


def test_filters(client: TestClient, history: dict[str, list[int]]) -> None:
    assert ids(listed(client, model="noop")) == sorted(history["noop"], reverse=True)
    assert ids(listed(client, model="forker")) == []
    assert ids(listed(client, status="failed")) == history["failed"]
    assert ids(listed(client, status="succeeded")) == sorted(history["noop"], reverse=True)
    assert [(i["id"], i["status"]) for i in listed(client, status="cancelled")["items"]] == [
        (history["cancelled"][0], "cancelled")
    ]
    assert ids(listed(client, model="noop", status="failed")) == []
    assert ids(listed(client, model="no_output", status=["failed", "succeeded"])) == history["failed"]


def test_filters_by_parameter_value_of_its_json_type(client: TestClient, platform: Platform) -> None:
    """A value that reads as a number matches the number (2 and 2.0 alike), text matches text."""
    numbers = {n: submit(client, "noop", {"n": n})["id"] for n in (1, 2)}
    labelled = submit(client, "noop", {"n": 3, "label": "north"})["id"]
    digits = submit(client, "noop", {"n": 4, "label": "2"})["id"]
    true_text = submit(client, "sleeper", {"seconds": 0, "tag": "true"})["id"]
    stubborn = submit(client, "sleeper", {"seconds": 0.5, "ignore_sigterm": True})["id"]
    for run_id in [*numbers.values(), labelled, digits, true_text, stubborn]:
        wait_for_run(client.get, run_id)

    assert ids(listed(client, param="n=2")) == [numbers[2]]
    assert ids(listed(client, param="n=2.0")) == [numbers[2]]
    assert ids(listed(client, param="label=north")) == [labelled]
    assert ids(listed(client, param="label=2")) == []  # 2 is a number; the label is the text "2"
    assert ids(listed(client, param='label="2"')) == [digits]
    assert ids(listed(client, param="seconds=0.5")) == [stubborn]
    assert ids(listed(client, param="ignore_sigterm=true")) == [stubborn]
    assert ids(listed(client, param="tag=true")) == []  # true is the boolean, not the text
    assert ids(listed(client, param='tag="true"')) == [true_text]
    assert ids(listed(client, param=["n=3", "label=north"])) == [labelled]
    assert ids(listed(client, param=["n=1", "label=north"])) == []
    assert ids(listed(client, param="no such=1")) == []
    assert ids(listed(client, param="n=2", model="sleeper")) == []


def test_filters_by_submitter_and_backend(client: TestClient, platform: Platform) -> None:
    add_user(platform.database, "sam", groups=[], admin=True)
    sams = TestClient(client.app, headers=bearer(token_for(platform.database, "sam")))
    mine = submit(client, "noop", {"n": 1})["id"]
    theirs = submit(sams, "noop", {"n": 2})["id"]
    for run_id in (mine, theirs):
        wait_for_run(client.get, run_id)

    assert ids(listed(client, submitter="sam")) == [theirs]
    assert ids(listed(client, submitter="admin")) == [mine]
    assert ids(listed(client, submitter="nobody")) == []
    assert ids(listed(client, backend="local")) == [theirs, mine]
    assert ids(listed(client, backend="elsewhere")) == []
    assert [i["submitted_by"] for i in listed(client, submitter="sam", backend="local")["items"]] == ["sam"]


def test_repeated_status_matches_any(client: TestClient, history: dict[str, list[int]]) -> None:
    page = listed(client, status=["failed", "cancelled"])

    assert ids(page) == sorted(history["failed"] + history["cancelled"], reverse=True)


def test_pages_follow_each_other_without_gaps_or_duplicates(client: TestClient, history: dict[str, list[int]]) -> None:
    everything = newest_first(history)
    assert len(everything) == 7

    pages = [listed(client, limit=3)]
    while pages[-1]["next_cursor"] is not None:
        assert len(pages) < 5, "pagination does not end"
        pages.append(listed(client, limit=3, cursor=pages[-1]["next_cursor"]))

    assert [len(p["items"]) for p in pages] == [3, 3, 1]
    assert [run_id for page in pages for run_id in ids(page)] == everything


def test_pages_of_a_filtered_list(client: TestClient, history: dict[str, list[int]]) -> None:
    first = listed(client, model="noop", limit=2)
    second = listed(client, model="noop", limit=2, cursor=first["next_cursor"])
    third = listed(client, model="noop", limit=2, cursor=second["next_cursor"])

    assert ids(first) + ids(second) + ids(third) == sorted(history["noop"], reverse=True)
    assert third["next_cursor"] is None
    # A page that ends exactly at the last run says so.
    assert listed(client, model="noop", limit=5)["next_cursor"] is None
    assert listed(client, model="noop", limit=4)["next_cursor"] is not None


def test_new_runs_do_not_disturb_a_listing_in_progress(client: TestClient, history: dict[str, list[int]]) -> None:
    first = listed(client, limit=3)
    newer = submit(client, "noop", {"n": 100})["id"]

    rest = listed(client, limit=10, cursor=first["next_cursor"])

    assert newer not in ids(rest)
    assert ids(first) + ids(rest) == newest_first(history)
    wait_for_run(client.get, newer)


def test_bad_cursor(client: TestClient, subtests: pytest.Subtests) -> None:
    for cursor in ("!!!", "not-a-cursor", base64.urlsafe_b64encode(b"\xff\xfe").decode(), "eDE"):
        with subtests.test(cursor=cursor):
            response = client.get("/api/v1/runs", params={"cursor": cursor})

            assert response.status_code == 422
            [error] = response.json()["detail"]
            assert error["loc"] == ["query", "cursor"]
            assert "cursor" in error["msg"]


def test_bad_filters(client: TestClient, subtests: pytest.Subtests) -> None:
    cases: list[tuple[dict[str, Any], list[Any]]] = [
        ({"status": "sleeping"}, ["query", "status", 0]),
        ({"limit": 0}, ["query", "limit"]),
        ({"limit": 501}, ["query", "limit"]),
        ({"limit": "many"}, ["query", "limit"]),
        ({"param": "north"}, ["query", "param"]),
        ({"param": "=north"}, ["query", "param"]),
        ({"param": 'label="\\u0000"'}, ["query", "param"]),
        ({"param": 'label="\\ud800"'}, ["query", "param"]),
    ]
    for params, loc in cases:
        with subtests.test(params=params):
            response = client.get("/api/v1/runs", params=params)

            assert response.status_code == 422
            assert response.json()["detail"][0]["loc"] == loc
