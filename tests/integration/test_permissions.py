"""Who may do what: every route of the OpenAPI schema, called by every kind of caller.

The workspace grants ``viewers`` view, ``runners`` run and ``admins`` admin on the ``counter``
model (which reads the ``cases`` dataset and has a schedule and a trigger) and on ``noop``; the
``others`` group gets the ``sleeper`` model only. A route missing from ROUTES fails the test, so a
new endpoint cannot ship without a decision about who may call it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from modelrunner.platform import Platform
from modelrunner.store import queries
from tests.conftest import wait_for_run
from tests.data_fixtures import GitRepo, git_repo  # noqa: F401
from tests.dataset_workspace import build_workspace, git_dataset
from tests.identities import add_user, bearer, token_for
from tests.integration.runs_api import submit, wait_until

CALLERS = ("anonymous", "viewer", "runner", "admin", "other", "site_admin")

ACCESS = {
    "groups": {
        "viewers": [{"models": ["counter", "noop"], "allow": "view"}],
        "runners": [{"models": ["counter", "noop"], "allow": "run"}],
        "admins": [{"models": ["counter", "noop"], "allow": "admin"}],
        "others": [{"models": "sleeper", "allow": "admin"}],
    }
}

DENIED = {"anonymous": 401, "viewer": 403, "runner": 403, "admin": 403, "other": 403}
OK = {200}


def expect(allowed: set[int], *, least: str) -> dict[str, set[int]]:
    """``allowed`` for callers at or above ``least`` (view < run < admin); the denial otherwise."""
    order = ["viewer", "runner", "admin"]
    granted = set(order[order.index(least) :]) | {"site_admin"}
    return {caller: allowed if caller in granted else {DENIED[caller]} for caller in CALLERS}


def on_a_run(allowed: set[int], *, least: str) -> dict[str, set[int]]:
    """As ``expect``, but a caller who may not view the run's model finds no such run: run ids are
    sequential, and walking them must not reveal which hidden models exist."""
    return {**expect(allowed, least=least), "other": {404}}


def listing() -> dict[str, set[int]]:
    """Lists answer everyone signed in (with what they may see); anonymous callers are asked to sign in."""
    return {caller: {401} if caller == "anonymous" else OK for caller in CALLERS}


def site_admin_only(allowed: set[int]) -> dict[str, set[int]]:
    return {caller: allowed if caller == "site_admin" else {DENIED[caller]} for caller in CALLERS}


# (method, path) -> caller -> the statuses that caller may get.
ROUTES: dict[tuple[str, str], dict[str, set[int]]] = {
    ("get", "/api/v1/models"): listing(),
    ("get", "/api/v1/models/{name}"): expect(OK, least="viewer"),
    ("post", "/api/v1/models/{name}/runs"): expect({201}, least="runner"),
    ("post", "/api/v1/models/{name}/runs/batch"): expect({201}, least="runner"),
    ("post", "/api/v1/models/{name}/runs/upload"): expect({201}, least="runner"),
    ("get", "/api/v1/models/{name}/results"): expect(OK, least="viewer"),
    ("get", "/api/v1/runs"): listing(),
    ("get", "/api/v1/runs/{run_id}"): on_a_run(OK, least="viewer"),
    ("post", "/api/v1/runs/{run_id}/rerun"): on_a_run({200, 201}, least="runner"),
    # The run was submitted by someone else: cancelling it needs admin (409: it has ended).
    ("post", "/api/v1/runs/{run_id}/cancel"): on_a_run({409}, least="admin"),
    ("get", "/api/v1/runs/{run_id}/logs"): on_a_run(OK, least="viewer"),
    ("get", "/api/v1/runs/{run_id}/explain"): on_a_run(OK, least="viewer"),
    ("get", "/api/v1/runs/{run_id}/events"): on_a_run(OK, least="viewer"),
    ("get", "/api/v1/runs/{run_id}/outputs"): on_a_run(OK, least="viewer"),
    ("get", "/api/v1/runs/{run_id}/outputs/{path}"): on_a_run(OK, least="viewer"),
    # A partial output of the run's attempt 1: it succeeded, so it kept none (an empty list, a 404).
    ("get", "/api/v1/runs/{run_id}/attempts/{number}/outputs"): on_a_run(OK, least="viewer"),
    ("get", "/api/v1/runs/{run_id}/attempts/{number}/outputs/{path}"): on_a_run({404}, least="viewer"),
    ("get", "/api/v1/datasets"): listing(),
    ("get", "/api/v1/datasets/{name}"): expect(OK, least="viewer"),
    ("get", "/api/v1/datasets/{name}/versions"): expect(OK, least="viewer"),
    ("get", "/api/v1/datasets/{name}/versions/{version}"): expect(OK, least="viewer"),
    ("delete", "/api/v1/datasets/{name}/versions"): expect(OK, least="admin"),
    ("post", "/api/v1/datasets/{name}/sync"): expect({200, 202}, least="runner"),
    ("get", "/api/v1/datasets/{name}/syncs"): expect(OK, least="viewer"),
    ("get", "/api/v1/datasets/{name}/syncs/{sync_id}"): expect(OK, least="viewer"),
    ("get", "/api/v1/datasets/{name}/diff"): expect(OK, least="viewer"),
    # Writing needs `run` on a model reading the dataset; `cases` is synced from git, not managed
    # by modelrunner, so a caller who may write it is told it cannot be written (422).
    ("put", "/api/v1/datasets/{name}/files/{path}"): expect({422}, least="runner"),
    ("post", "/api/v1/datasets/{name}/files"): expect({422}, least="runner"),
    ("delete", "/api/v1/datasets/{name}/files/{path}"): expect({422}, least="runner"),
    ("get", "/api/v1/schedules"): listing(),
    ("get", "/api/v1/backends"): listing(),  # names and load only, as runs show their backend
    ("post", "/api/v1/schedules/{name}/run"): expect({201}, least="runner"),
    ("get", "/api/v1/schedules/{name}/firings"): expect(OK, least="viewer"),
    ("get", "/api/v1/triggers"): listing(),
    ("get", "/api/v1/triggers/{name}/firings"): expect(OK, least="viewer"),
    ("get", "/api/v1/export/status"): listing(),
    ("get", "/api/v1/export/runtimes"): listing(),
    # An attempt's callback token only: every user's token is refused.
    ("post", "/api/v1/attempts/{attempt_id}/progress"): {
        caller: {401} if caller == "anonymous" else {403} for caller in CALLERS
    },
    # A worker's calls about its attempt: the attempt's callback token only.
    **{
        (method, f"/api/v1/attempts/{{attempt_id}}/{path}"): {
            caller: {401} if caller == "anonymous" else {403} for caller in CALLERS
        }
        for method, path in [
            ("post", "heartbeat"),
            ("post", "log"),
            ("post", "finish"),
            ("get", "files"),
            ("get", "files/{key}"),
            ("put", "files/{key}"),
        ]
    },
    # Serving a pool: a site admin or the group `workers` (this workspace has no pool: 404).
    ("post", "/api/v1/pools/{pool}/claim"): site_admin_only({404}),
    ("get", "/api/v1/healthz"): {caller: OK for caller in CALLERS},
    ("get", "/api/v1/metrics"): listing(),
    ("get", "/api/v1/me"): listing(),
    ("get", "/api/v1/tokens"): listing(),  # one's own tokens (a site admin: everyone's), never their secrets
    ("get", "/api/v1/users"): site_admin_only(OK),
    ("get", "/api/v1/groups"): site_admin_only(OK),
    ("post", "/api/v1/users/{name}/sign-out"): site_admin_only(OK),  # ends all of that user's web sessions
    ("get", "/api/v1/subscriptions"): listing(),
    ("post", "/api/v1/subscriptions"): expect({201}, least="viewer"),
    ("get", "/api/v1/deliveries"): listing(),
    # The runner's own: others learn nothing of it (404); a site admin sees everyone's.
    ("get", "/api/v1/deliveries/{delivery_id}"): {
        "anonymous": {401},
        "viewer": {404},
        "runner": OK,
        "admin": {404},
        "other": {404},
        "site_admin": OK,
    },
    ("delete", "/api/v1/subscriptions/{subscription_id}"): {
        "anonymous": {401},
        "viewer": {404},
        "runner": OK,
        "admin": {404},
        "other": {404},
        "site_admin": {404},  # the runner removed it already
    },
}


@dataclass
class World:
    """The objects the routes' path parameters name."""

    run_id: int
    attempt_id: int
    version: str
    sync_id: int
    subscription_id: int  # the runner's
    delivery_id: int  # of the runner's subscription


@pytest.fixture
def workspace(tmp_path: Path, git_repo: GitRepo) -> Path:  # noqa: F811 (the fixture it needs)
    destination = build_workspace(tmp_path / "workspace", {"cases": git_dataset(git_repo)})
    spec = yaml.safe_load((destination / "modelrunner.yaml").read_text())
    (destination / "modelrunner.yaml").write_text(yaml.safe_dump({**spec, "access": ACCESS}, sort_keys=False))
    model_file = destination / "counter" / "model.yaml"
    model = yaml.safe_load(model_file.read_text())
    model["schedules"] = [{"name": "nightly", "cron": "0 3 * * *", "enabled": False}]
    model["triggers"] = [{"name": "fresh", "on": "dataset.version_added", "dataset": "cases", "enabled": False}]
    model_file.write_text(yaml.safe_dump(model, sort_keys=False))
    git_repo.commit({"data/cases.csv": "day,cases\n1,3\n2,5\n"}, "first cases")
    return destination


@pytest.fixture
def tokens(client: TestClient, platform: Platform) -> dict[str, str | None]:
    return {
        "anonymous": None,
        "viewer": add_user(platform.database, "vera", groups=["viewers"]),
        "runner": add_user(platform.database, "rami", groups=["runners"]),
        "admin": add_user(platform.database, "ada", groups=["admins"]),
        "other": add_user(platform.database, "otto", groups=["others"]),
        "site_admin": token_for(platform.database, "admin"),
    }


@pytest.fixture
def world(client: TestClient, platform: Platform, tokens: dict[str, str | None]) -> World:
    """A synced dataset version and a succeeded run of ``counter``, made by the site admin, and
    the delivery of a webhook the runner subscribed to it."""
    runner = _headers(tokens["runner"])
    hook = {"model": "counter", "channel": "webhook", "url": "http://127.0.0.1:9/hook"}
    subscription = client.post("/api/v1/subscriptions", json=hook, headers=runner).json()
    sync = client.post("/api/v1/datasets/cases/sync").json()
    wait_until(
        lambda: client.get(f"/api/v1/datasets/cases/syncs/{sync['id']}").json()["status"] == "succeeded",
        20,
        "the first sync",
    )
    version = client.get("/api/v1/datasets/cases/versions").json()[0]["version"]
    run = wait_for_run(client.get, submit(client, "counter", {"n": 0})["id"])
    assert run["status"] == "succeeded"
    with platform.database.read() as session:
        attempt_id = queries.attempts_of(session, run["id"])[0].id
    deliveries = wait_until(
        lambda: client.get("/api/v1/deliveries", headers=runner).json(), 20, "the webhook's delivery is queued"
    )
    return World(run["id"], attempt_id, version, sync["id"], subscription["id"], deliveries[0]["id"])


def test_every_route_answers_each_caller_as_the_access_rules_say(
    client: TestClient, tokens: dict[str, str | None], world: World
) -> None:
    schema = client.app.openapi()  # type: ignore[attr-defined]
    routes = [(method, path) for path, operations in schema["paths"].items() for method in operations]
    assert sorted(set(routes) - set(ROUTES)) == [], "routes without a line in ROUTES: decide who may call them"
    assert sorted(set(ROUTES) - set(routes)) == [], "ROUTES names routes the API no longer has"

    # Deleting versions last: what it removes, the other routes read.
    ordered = sorted(routes, key=lambda route: route[0] == "delete")
    failures = []
    for method, path in ordered:
        for number, caller in enumerate(CALLERS):
            response = _call(client, method, path, tokens[caller], world, number)
            if response.status_code not in ROUTES[(method, path)][caller]:
                expected = sorted(ROUTES[(method, path)][caller])
                failures.append(f"{method.upper()} {path} as {caller}: {response.status_code}, expected {expected}")
            elif response.status_code in (401, 403):
                assert isinstance(response.json()["detail"], str) and response.json()["detail"]
    assert failures == []


def test_lists_show_only_what_the_caller_may_view(
    client: TestClient, tokens: dict[str, str | None], world: World
) -> None:
    sleeper = submit(client, "sleeper", {"seconds": 0})["id"]

    def names(path: str, caller: str, key: str) -> set[str]:
        response = client.get(path, headers=_headers(tokens[caller]))
        assert response.status_code == 200, response.text
        body = response.json()
        return {item[key] for item in (body["items"] if isinstance(body, dict) else body)}

    assert names("/api/v1/models", "viewer", "name") == {"counter", "noop"}
    assert names("/api/v1/models", "other", "name") == {"sleeper"}
    assert names("/api/v1/runs", "viewer", "model") == {"counter"}
    assert names("/api/v1/runs", "other", "model") == {"sleeper"}
    assert names("/api/v1/datasets", "viewer", "name") == {"cases"}
    assert names("/api/v1/datasets", "other", "name") == set()
    assert names("/api/v1/schedules", "other", "name") == set()
    assert names("/api/v1/export/status", "other", "model") <= {"sleeper"}
    denied = client.get(f"/api/v1/runs/{world.run_id}", headers=_headers(tokens["other"]))
    unknown = client.get("/api/v1/runs/999999", headers=_headers(tokens["other"]))
    assert denied.status_code == 404
    assert denied.json() == {"detail": f"unknown run {world.run_id}"}  # as for a run that is not there
    assert unknown.status_code == 404 and unknown.json() == {"detail": "unknown run 999999"}
    assert client.get(f"/api/v1/runs/{sleeper}", headers=_headers(tokens["other"])).status_code == 200


def test_anonymous_grants_open_public_models_without_a_token(platform: Platform, client: TestClient) -> None:
    spec = yaml.safe_load((platform.workspace.root / "modelrunner.yaml").read_text())
    spec["access"] = {
        "anonymous": [{"models": "noop", "allow": "view"}],
        "signed_in": [{"models": "*", "allow": "run"}],
    }
    (platform.workspace.root / "modelrunner.yaml").write_text(yaml.safe_dump(spec))
    run = wait_for_run(client.get, submit(client, "noop", {"n": 4})["id"])
    member = add_user(platform.database, "sam")

    anonymous = {"Authorization": ""}
    assert [m["name"] for m in client.get("/api/v1/models", headers=anonymous).json()] == ["noop"]
    assert client.get(f"/api/v1/runs/{run['id']}/outputs/params.json", headers=anonymous).status_code == 200
    refused = client.post("/api/v1/models/noop/runs", json={"params": {"n": 5}}, headers=anonymous)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert "needs 'run' on model 'noop': sign in" in refused.json()["detail"]
    assert client.post("/api/v1/models/noop/runs", json={"params": {"n": 5}}, headers=bearer(member)).status_code == 201


def test_unknown_expired_and_revoked_tokens_are_401(platform: Platform, client: TestClient) -> None:
    from modelrunner.auth import accounts

    token = add_user(platform.database, "tess", groups=["viewers"])
    assert client.get("/api/v1/models", headers=bearer(token)).status_code == 200
    forged = token[:-4] + ("aaaa" if not token.endswith("aaaa") else "bbbb")
    for bad in (forged, "mrt_999_nope", "not-a-token"):
        response = client.get("/api/v1/models", headers=bearer(bad))
        assert response.status_code == 401, bad
        assert bad not in response.text
    with platform.database.write() as session:
        accounts.revoke_token(session, int(token.split("_")[1]))
    assert "revoked" in client.get("/api/v1/models", headers=bearer(token)).json()["detail"]
    with platform.database.write() as session:
        short = accounts.create_token(session, "tess", expires_in=0.2).token
    wait_until(lambda: client.get("/api/v1/models", headers=bearer(short)).status_code == 401, 5, "token expiry")
    assert "expired" in client.get("/api/v1/models", headers=bearer(short)).json()["detail"]


def _headers(token: str | None) -> dict[str, str]:
    # The client carries the site admin's token by default: an empty header means none.
    return bearer(token) if token else {"Authorization": ""}


def _call(client: TestClient, method: str, path: str, token: str | None, world: World, number: int) -> Any:
    values = {
        "name": _name_for(path),
        "run_id": str(world.run_id),
        "path": "count.json",
        "version": world.version,
        "sync_id": str(world.sync_id),
        "attempt_id": str(world.attempt_id),
        "number": "1",
        "subscription_id": str(world.subscription_id),
        "delivery_id": str(world.delivery_id),
        "pool": "pool",
        "key": "models/counter/snapshot.tar.gz",
    }
    url = path
    for key, value in values.items():
        url = url.replace("{" + key + "}", value)
    kwargs: dict[str, Any] = {"headers": _headers(token)}
    if path == "/api/v1/models/{name}/runs":
        kwargs["json"] = {"params": {"n": 100 + number}}  # a new run for each caller
    if path == "/api/v1/models/{name}/runs/batch":
        kwargs["json"] = {"runs": [{"params": {"n": 200 + number}}, {"params": {"n": 300 + number}}]}
    if path == "/api/v1/models/{name}/runs/upload":
        kwargs["data"] = {"request": json.dumps({"params": {"n": 400 + number}})}  # counter has no file parameter
    if path == "/api/v1/models/{name}/results":
        kwargs["params"] = {"n": 0}
    if path == "/api/v1/datasets/{name}/diff":
        kwargs["params"] = {"from": world.version, "to": world.version}
    if path == "/api/v1/subscriptions" and method == "post":
        kwargs["json"] = {"model": "counter", "channel": "webhook", "url": f"https://hooks.example.org/{number}"}
    return client.request(method.upper(), url, **kwargs)


def _name_for(path: str) -> str:
    if path.startswith("/api/v1/datasets"):
        return "cases"
    if path.startswith("/api/v1/schedules"):
        return "counter/nightly"
    if path.startswith("/api/v1/triggers"):
        return "counter/fresh"
    if path.startswith("/api/v1/users"):
        return "otto"
    return "counter"
