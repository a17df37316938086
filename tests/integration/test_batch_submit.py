"""POST /api/v1/models/{name}/runs/batch: many runs in one request, all or none, each answered as a
single submit answers it."""

from __future__ import annotations

from typing import Any

import yaml
from fastapi.testclient import TestClient

from modelrunner.platform import Platform
from modelrunner.settings import Settings
from modelrunner.store import queries
from tests.conftest import admin_client, wait_for_run
from tests.identities import add_user, bearer
from tests.integration.runs_api import stored_counts, submit


def post_batch(client: TestClient, model: str, runs: list[dict[str, Any]], **kwargs: Any) -> Any:
    return client.post(f"/api/v1/models/{model}/runs/batch", json={"runs": runs}, **kwargs)


def test_a_batch_creates_its_runs_in_order_and_a_repeat_joins_or_hits_the_cache(
    client: TestClient, platform: Platform
) -> None:
    items = [{"params": {"n": n}} for n in (3, 1, 2)] + [{"params": {"n": 1}}]

    response = post_batch(client, "noop", items)

    assert response.status_code == 201, response.text
    runs = response.json()["runs"]
    assert [r["submission"] for r in runs] == ["created", "created", "created", "joined"]
    assert [r["params"]["n"] for r in runs] == [3, 1, 2, 1]
    assert [r["params"]["label"] for r in runs] == ["", "", "", ""]  # defaults filled in, as on a single submit
    ids = [r["id"] for r in runs]
    assert ids[:3] == sorted(ids[:3]) and ids[3] == ids[1], "the identical fourth item joins the second's run"
    assert {r["status"] for r in runs[:3]} <= {"queued", "starting", "running", "succeeded"}
    assert stored_counts(platform)[0] == 3
    with platform.database.read() as session:
        firsts = [queries.events_of(session, run_id, 0, 1)[0] for run_id in ids[:3]]
    assert [e.data for e in firsts] == [{"from": None, "to": "queued"}] * 3

    finished = [wait_for_run(client.get, run_id) for run_id in ids[:3]]
    assert {r["status"] for r in finished} == {"succeeded"}
    again = post_batch(client, "noop", items)

    assert again.status_code == 200, again.text
    hits = again.json()["runs"]
    assert [h["submission"] for h in hits] == ["cache_hit"] * 4
    assert [h["source_run_id"] for h in hits] == [ids[0], ids[1], ids[2], ids[1]]
    assert all(h["outputs"] and h["status"] == "succeeded" for h in hits)


def test_a_repeated_batch_joins_the_runs_in_flight(client: TestClient) -> None:
    items = [{"params": {"seconds": 3, "tag": tag}} for tag in ("a", "b")]
    first = post_batch(client, "sleeper", items).json()["runs"]

    again = post_batch(client, "sleeper", items)

    assert again.status_code == 201, again.text
    joined = again.json()["runs"]
    assert [r["submission"] for r in joined] == ["joined", "joined"]
    assert [r["id"] for r in joined] == [r["id"] for r in first]
    assert submit(client, "sleeper", items[0]["params"])["id"] == first[0]["id"]  # a single submit joins it too


def test_a_bad_item_refuses_the_whole_batch_naming_each_by_index(client: TestClient, platform: Platform) -> None:
    items = [
        {"params": {"n": 1}},
        {"params": {"n": "many"}},
        {"params": {"n": 2}},
        {"params": {"n": 4}, "backend": "nowhere"},
        {"params": {"label": "x" * 70_000}},
    ]

    response = post_batch(client, "noop", items)

    assert response.status_code == 422, response.text
    refused = {d["loc"][2]: d for d in response.json()["detail"]}
    assert sorted(refused) == [1, 3, 4]
    assert refused[1]["loc"] == ["body", "runs", 1, "params", "n"]
    assert refused[1]["status"] == 422 and refused[1]["type"] == "invalid_params"
    assert "nowhere" in refused[3]["msg"]
    assert "max_param_string_length" in refused[4]["msg"]
    assert stored_counts(platform) == (0, 0)


def test_a_cache_only_item_without_a_result_refuses_the_whole_batch(client: TestClient, platform: Platform) -> None:
    done = wait_for_run(client.get, submit(client, "noop", {"n": 1})["id"])
    before = stored_counts(platform)

    response = post_batch(
        client, "noop", [{"params": {"n": 1}, "cache": "only"}, {"params": {"n": 2}, "cache": "only"}]
    )

    assert response.status_code == 422, response.text
    [detail] = response.json()["detail"]
    assert detail["loc"] == ["body", "runs", 1] and detail["status"] == 409 and detail["type"] == "conflict"
    assert "no cached result" in detail["msg"]
    assert stored_counts(platform) == before, "the first item's cache hit was not recorded either"
    hit = post_batch(client, "noop", [{"params": {"n": 1}, "cache": "only"}]).json()["runs"]
    assert hit[0]["source_run_id"] == done["id"]


def test_a_batch_over_the_limit_is_refused_naming_the_setting(settings: Settings) -> None:
    platform = Platform(settings.model_copy(update={"max_batch_runs": 2}))
    with admin_client(platform) as client:
        response = post_batch(client, "noop", [{"params": {"n": n}} for n in range(3)])

        assert response.status_code == 422, response.text
        [detail] = response.json()["detail"]
        assert detail["loc"] == ["body", "runs"] and detail["type"] == "too_long"
        assert detail["ctx"] == {"max_length": 2, "setting": "max_batch_runs"}
        assert "max_batch_runs" in detail["msg"] and "MODELRUNNER_MAX_BATCH_RUNS" in detail["msg"]
        assert stored_counts(platform) == (0, 0)
        assert post_batch(client, "noop", [{"params": {"n": n}} for n in range(2)]).status_code == 201


def test_a_batch_needs_run_on_the_model(client: TestClient, platform: Platform) -> None:
    spec_file = platform.workspace.root / "modelrunner.yaml"
    spec = yaml.safe_load(spec_file.read_text()) or {}
    access = {
        "groups": {"viewers": [{"models": "noop", "allow": "view"}], "runners": [{"models": "noop", "allow": "run"}]}
    }
    spec_file.write_text(yaml.safe_dump({**spec, "access": access}))
    viewer = bearer(add_user(platform.database, "vera", groups=["viewers"]))
    runner = bearer(add_user(platform.database, "rami", groups=["runners"]))
    items = [{"params": {"n": 1}}, {"params": {"n": 2}}]

    denied = post_batch(client, "noop", items, headers=viewer)

    assert denied.status_code == 403, denied.text
    assert "'run' on model 'noop'" in denied.json()["detail"]
    assert stored_counts(platform) == (0, 0)
    allowed = post_batch(client, "noop", items, headers=runner)
    assert allowed.status_code == 201, allowed.text
    assert {r["submitted_by"] for r in allowed.json()["runs"]} == {"rami"}


def test_an_empty_batch_answers_an_empty_list(client: TestClient, platform: Platform) -> None:
    response = post_batch(client, "noop", [])

    assert response.status_code == 200, response.text
    assert response.json() == {"runs": []}
    assert stored_counts(platform) == (0, 0)
