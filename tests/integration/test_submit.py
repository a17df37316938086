"""POST /api/v1/models/{name}/runs: new runs, cache hits, joins, and bad input that writes nothing."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelrunner.platform import Platform
from tests.conftest import TESTS, wait_for_run
from tests.integration.runs_api import get_run, status_path, stored_counts, submit


def post(client: TestClient, model: str, body: Any) -> Any:
    return client.post(f"/api/v1/models/{model}/runs", json=body)


def download(client: TestClient, run: dict[str, Any], path: str) -> bytes:
    response = client.get(f"/api/v1/runs/{run['id']}/outputs/{path}")
    assert response.status_code == 200, response.text
    return response.content


def assert_rejected_without_trace(client: TestClient, platform: Platform, response: Any, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "Traceback" not in response.text
    assert stored_counts(platform) == (0, 0)
    assert client.get("/api/v1/runs").json() == {"items": [], "next_cursor": None}


# --- models ---------------------------------------------------------------------------------------


def test_models_are_listed_with_their_versions_and_schemas(client: TestClient) -> None:
    response = client.get("/api/v1/models")

    assert response.status_code == 200
    models = {m["name"]: m for m in response.json()}
    assert sorted(models) == ["failing", "flaky", "forker", "no_output", "noop", "sleeper"]
    assert models["sleeper"]["title"] == "Sleeps with progress"
    assert len(models["noop"]["version"]) == 16
    detail = client.get("/api/v1/models/forker").json()
    assert detail["params"]["required"] == ["pidfile"]
    assert detail["params"]["properties"]["seconds"] == {"type": "number", "default": 60}
    assert detail["resources"]["timeout"] == 120
    assert detail["version"] == models["forker"]["version"]
    unknown = client.get("/api/v1/models/nope")
    assert unknown.status_code == 404
    assert "nope" in unknown.json()["detail"]


def test_a_broken_model_names_its_problems_and_runs_nothing(
    client: TestClient, platform: Platform, workspace: Path
) -> None:
    shutil.copytree(TESTS / "workspace" / "broken", workspace / "broken")

    response = post(client, "broken", {"params": {}})

    assert_rejected_without_trace(client, platform, response, 422)
    problems = response.json()["problems"]
    assert any(p.startswith("broken/model.yaml: unknown_field") for p in problems)
    assert any(p.startswith("broken/model.yaml: resources.timeout") for p in problems)
    assert "broken" not in [m["name"] for m in client.get("/api/v1/models").json()]


# --- new runs and the cache -----------------------------------------------------------------------


def test_new_run_is_created_with_defaults_filled_in(client: TestClient) -> None:
    response = post(client, "noop", {"params": {"n": 3}})

    assert response.status_code == 201
    run = response.json()
    assert run["submission"] == "created"
    assert run["model"] == "noop"
    assert run["status"] in ("queued", "starting", "running")
    assert run["cache_hit"] is False
    assert run["source_run_id"] is None
    assert run["params"] == {"n": 3, "label": ""}
    assert run["model_version"] == client.get("/api/v1/models/noop").json()["version"]
    assert get_run(client, run["id"])["id"] == run["id"]


def test_a_body_without_params_runs_with_defaults(client: TestClient) -> None:
    response = post(client, "noop", {})

    assert response.status_code == 201
    assert response.json()["params"] == {"n": 0, "label": ""}


def test_identical_request_is_answered_from_the_cache(client: TestClient) -> None:
    first = submit(client, "noop", {"n": 1, "label": "x"})
    source = wait_for_run(client.get, first["id"])
    assert source["status"] == "succeeded"

    response = post(client, "noop", {"params": {"label": "x", "n": 1.0}})  # other order, 1.0 for 1

    assert response.status_code == 200
    hit = response.json()
    assert hit["submission"] == "cache_hit"
    assert hit["cache_hit"] is True
    assert hit["source_run_id"] == source["id"]
    assert hit["id"] != source["id"]
    assert hit["status"] == "succeeded"
    assert hit["cache_key"] == source["cache_key"]
    assert hit["attempts"] == []
    assert [(o["path"], o["size"], o["sha256"]) for o in hit["outputs"]] == [
        (o["path"], o["size"], o["sha256"]) for o in source["outputs"]
    ]
    content = download(client, hit, "params.json")
    assert content == download(client, source, "params.json")
    assert hashlib.sha256(content).hexdigest() == source["outputs"][0]["sha256"]
    # The hit is in the caller's history, and nothing ran a second time.
    assert {r["id"] for r in client.get("/api/v1/runs?model=noop").json()["items"]} == {source["id"], hit["id"]}
    hit_events = client.get(f"/api/v1/runs/{hit['id']}/events").json()["items"]
    assert [(e["type"], e["data"]) for e in hit_events] == [
        ("run.status", {"from": None, "to": "succeeded", "cache_hit": True, "source_run_id": source["id"]})
    ]


def test_other_parameters_are_not_a_cache_hit(client: TestClient) -> None:
    first = submit(client, "noop", {"n": 1})
    wait_for_run(client.get, first["id"])

    response = post(client, "noop", {"params": {"n": 2}})

    assert response.status_code == 201
    assert response.json()["cache_key"] != first["cache_key"]


def test_a_failed_run_is_not_a_cache_hit(client: TestClient) -> None:
    first = submit(client, "no_output")
    assert wait_for_run(client.get, first["id"])["status"] == "failed"

    response = post(client, "no_output", {"params": {}})

    assert response.status_code == 201
    assert response.json()["id"] != first["id"]


def test_identical_request_joins_the_run_in_flight(client: TestClient) -> None:
    first = submit(client, "sleeper", {"seconds": 0.5})

    response = post(client, "sleeper", {"params": {"seconds": 0.5}})

    assert response.status_code == 201
    joined = response.json()
    assert joined["submission"] == "joined"
    assert joined["id"] == first["id"]
    assert wait_for_run(client.get, first["id"])["status"] == "succeeded"
    assert len(client.get("/api/v1/runs").json()["items"]) == 1


def test_an_edited_model_is_computed_again(client: TestClient, workspace: Path) -> None:
    first = submit(client, "noop", {"n": 5})
    wait_for_run(client.get, first["id"])
    script = workspace / "noop" / "noop.py"
    script.write_text(script.read_text() + "# a change to the code\n")

    response = post(client, "noop", {"params": {"n": 5}})

    assert response.status_code == 201
    second = response.json()
    assert second["model_version"] != first["model_version"]
    assert second["model_version"] == client.get("/api/v1/models/noop").json()["version"]
    assert wait_for_run(client.get, second["id"])["status"] == "succeeded"


def test_cache_only_answers_from_the_cache_or_is_a_conflict(client: TestClient, platform: Platform) -> None:
    response = post(client, "noop", {"params": {"n": 9}, "cache": "only"})

    assert_rejected_without_trace(client, platform, response, 409)
    assert "no cached result" in response.json()["detail"]
    first = submit(client, "noop", {"n": 9})
    wait_for_run(client.get, first["id"])
    response = post(client, "noop", {"params": {"n": 9}, "cache": "only"})
    assert response.status_code == 200
    assert response.json()["source_run_id"] == first["id"]


def test_cache_only_does_not_join_a_run_in_flight(client: TestClient) -> None:
    first = submit(client, "sleeper", {"seconds": 0.5, "tag": "only"})

    response = post(client, "sleeper", {"params": {"seconds": 0.5, "tag": "only"}, "cache": "only"})

    assert response.status_code == 409
    wait_for_run(client.get, first["id"])


def test_refresh_computes_again_and_becomes_the_cached_result(client: TestClient) -> None:
    first = submit(client, "noop", {"n": 4})
    wait_for_run(client.get, first["id"])

    response = post(client, "noop", {"params": {"n": 4}, "cache": "refresh"})

    assert response.status_code == 201
    refreshed = response.json()
    assert refreshed["submission"] == "created"
    assert refreshed["id"] != first["id"]
    refreshed = wait_for_run(client.get, refreshed["id"])
    assert refreshed["status"] == "succeeded"
    assert refreshed["attempts"][0]["status"] == "succeeded"
    assert status_path(client, refreshed["id"]) == ["queued", "starting", "running", "succeeded"]
    hit = post(client, "noop", {"params": {"n": 4}})
    assert hit.status_code == 200
    assert hit.json()["source_run_id"] == refreshed["id"]


def test_max_age_recomputes_an_older_result(client: TestClient) -> None:
    first = submit(client, "noop", {"n": 6})
    source = wait_for_run(client.get, first["id"])

    fresh_enough = post(client, "noop", {"params": {"n": 6}, "max_age": 60})
    assert fresh_enough.status_code == 200
    assert fresh_enough.json()["source_run_id"] == source["id"]

    time.sleep(1.5)
    too_old = post(client, "noop", {"params": {"n": 6}, "max_age": 1})

    assert too_old.status_code == 201
    assert too_old.json()["submission"] == "created"
    assert too_old.json()["id"] not in (source["id"], fresh_enough.json()["id"])


def test_max_age_with_cache_only_and_an_old_result(client: TestClient) -> None:
    first = submit(client, "noop", {"n": 7})
    wait_for_run(client.get, first["id"])
    time.sleep(1.2)

    response = post(client, "noop", {"params": {"n": 7}, "cache": "only", "max_age": 1})

    assert response.status_code == 409
    assert "newer than 1 s" in response.json()["detail"]


# --- bad input ------------------------------------------------------------------------------------


INVALID_PARAMS: list[tuple[str, dict[str, Any], str]] = [
    ("noop", {"n": "three"}, "n"),
    ("noop", {"n": 1.5}, "n"),
    ("sleeper", {"seconds": -1}, "seconds"),
    ("forker", {}, "pidfile"),
    ("forker", {"seconds": 1}, "pidfile"),
    ("noop", {"nn": 1}, "nn"),
    ("forker", {"pidfile": "/tmp/x", "pidfle": "/tmp/y"}, "pidfle"),
]

INVALID_BODIES: list[tuple[Any, list[str]]] = [
    ({"params": [1, 2]}, ["body", "params"]),
    ({"params": "n=1"}, ["body", "params"]),
    ({"cache": "sometimes"}, ["body", "cache"]),
    ({"max_age": -1}, ["body", "max_age"]),
    ({"max_age": "old"}, ["body", "max_age"]),
    ({"params": {}, "colour": "red"}, ["body", "colour"]),
    ([], ["body"]),
]

MALFORMED_JSON = [b'{"params": {"n": 1', b"not json at all", b'{"params": {"n": 1}}}']


# One platform serves all cases of a kind (a fresh database per case would dominate the runtime);
# every case checks that the store is still empty.


def test_invalid_params_name_the_field_and_write_nothing(
    client: TestClient, platform: Platform, subtests: pytest.Subtests
) -> None:
    for model, params, field in INVALID_PARAMS:
        with subtests.test(model=model, params=params):
            response = post(client, model, {"params": params})

            assert_rejected_without_trace(client, platform, response, 422)
            [error] = response.json()["detail"]
            assert error["loc"][0] == "body"
            assert error["loc"][-1] == field
            assert field in error["msg"]


def test_invalid_request_body_names_the_field(
    client: TestClient, platform: Platform, subtests: pytest.Subtests
) -> None:
    for body, loc in INVALID_BODIES:
        with subtests.test(body=body):
            response = post(client, "noop", body)

            assert_rejected_without_trace(client, platform, response, 422)
            assert response.json()["detail"][0]["loc"] == loc


def test_malformed_json_is_rejected_and_writes_nothing(
    client: TestClient, platform: Platform, subtests: pytest.Subtests
) -> None:
    for content in MALFORMED_JSON:
        with subtests.test(content=content):
            response = client.post(
                "/api/v1/models/noop/runs", content=content, headers={"content-type": "application/json"}
            )

            assert_rejected_without_trace(client, platform, response, 422)
            assert response.json()["detail"][0]["type"] == "json_invalid"


def test_unknown_model_is_not_found_and_writes_nothing(client: TestClient, platform: Platform) -> None:
    response = post(client, "nope", {"params": {}})

    assert_rejected_without_trace(client, platform, response, 404)
    assert response.json() == {"detail": "unknown model 'nope'"}


def test_bad_input_after_good_runs_adds_nothing(client: TestClient, platform: Platform) -> None:
    run = submit(client, "noop", {"n": 1})
    wait_for_run(client.get, run["id"])
    before = stored_counts(platform)

    for body in ({"params": {"n": "x"}}, {"params": {"n": 1}, "cache": "bogus"}, {"params": {"n": 8}, "cache": "only"}):
        assert post(client, "noop", body).status_code in (409, 422)
    assert post(client, "forker", {"params": {}}).status_code == 422
    assert post(client, "nope", {"params": {}}).status_code == 404

    assert stored_counts(platform) == before
