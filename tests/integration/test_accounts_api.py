"""Accounts over HTTP: who am I, the users, groups and tokens a site admin sees, and the 401 or
403 every other caller gets; nothing ever shows a secret, a digest or a password hash."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from fastapi.testclient import TestClient

from modelrunner.auth import accounts
from modelrunner.clock import utcnow
from modelrunner.platform import Platform
from modelrunner.store.tables import ApiTokenRow, UserRow
from tests.identities import add_user, bearer

API = "/api/v1"


def anonymous(client: TestClient) -> TestClient:
    """A client of the same running app that sends no token."""
    return TestClient(client.app)


def as_user(client: TestClient, token: str, path: str, **params: str) -> tuple[int, object]:
    response = client.get(f"{API}{path}", headers=bearer(token), params=params)
    return response.status_code, response.json()


def stored_secrets(platform: Platform) -> list[str]:
    """Every token digest and password hash in the store."""
    with platform.database.read() as session:
        digests = [row.secret_hash for row in session.query(ApiTokenRow)]
        hashes = [row.password_hash for row in session.query(UserRow) if row.password_hash]
    return digests + hashes


def test_me_names_the_caller_with_groups_and_admin(client: TestClient, platform: Platform) -> None:
    alice = add_user(platform.database, "alice", groups=["modellers", "epi"])

    assert client.get(f"{API}/me").json() == {"name": "admin", "groups": [], "is_admin": True}
    assert as_user(client, alice, "/me") == (200, {"name": "alice", "groups": ["epi", "modellers"], "is_admin": False})


def test_me_without_a_token_is_401_with_a_bearer_challenge(client: TestClient) -> None:
    response = anonymous(client).get(f"{API}/me")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "Authorization: Bearer" in response.json()["detail"]


def test_a_site_admin_lists_users_and_groups_without_secrets(client: TestClient, platform: Platform) -> None:
    alice = add_user(platform.database, "alice", groups=["modellers"], email="alice@example.org", password="pw-1")
    add_user(platform.database, "bob", groups=["modellers", "ops"])

    users = client.get(f"{API}/users")
    groups = client.get(f"{API}/groups")

    assert users.status_code == 200
    by_name = {user["name"]: user for user in users.json()}
    assert list(by_name) == ["admin", "alice", "bob"]
    assert by_name["alice"] == {
        "name": "alice",
        "email": "alice@example.org",
        "is_admin": False,
        "disabled": False,
        "has_password": True,
        "groups": ["modellers"],
        "active_tokens": 1,
        "created_at": by_name["alice"]["created_at"],
    }
    assert by_name["admin"]["is_admin"] is True
    assert [(g["name"], g["members"]) for g in groups.json()] == [("modellers", ["alice", "bob"]), ("ops", ["bob"])]
    shown = users.text + groups.text + client.get(f"{API}/tokens").text
    for secret in [alice, alice.rsplit("_", 1)[-1], "pw-1", *stored_secrets(platform)]:
        assert secret not in shown


@pytest.mark.parametrize("path", ["/users", "/groups"])
def test_account_lists_are_for_site_admins_only(client: TestClient, platform: Platform, path: str) -> None:
    bob = add_user(platform.database, "bob", groups=["ops"])

    status, body = as_user(client, bob, path)
    anonymous_answer = anonymous(client).get(f"{API}{path}")

    assert status == 403
    assert isinstance(body, dict) and "needs a site admin; bob is not one" in body["detail"]
    assert anonymous_answer.status_code == 401


def test_a_user_lists_their_own_tokens_and_a_site_admin_everyones(client: TestClient, platform: Platform) -> None:
    alice = add_user(platform.database, "alice")
    add_user(platform.database, "bob")
    with platform.database.write() as session:
        accounts.create_token(session, "alice", label="laptop", expires_in=3600)

    status, own = as_user(client, alice, "/tokens")
    everyone = client.get(f"{API}/tokens").json()
    bobs = client.get(f"{API}/tokens", params={"user": "bob"}).json()

    assert status == 200 and isinstance(own, list)
    assert [(t["user"], t["label"], t["state"]) for t in own] == [
        ("alice", "", "active"),
        ("alice", "laptop", "active"),
    ]
    assert own[1]["expires_at"] is not None
    assert {t["user"] for t in everyone} == {"admin", "alice", "bob"}
    assert [t["user"] for t in bobs] == ["bob"]
    assert set(own[0]) == {"id", "user", "label", "state", "created_at", "expires_at", "revoked_at"}
    assert as_user(client, alice, "/tokens", user="alice")[0] == 200
    forbidden = as_user(client, alice, "/tokens", user="bob")
    assert forbidden[0] == 403
    assert "listing the tokens of user 'bob' needs a site admin" in json.dumps(forbidden[1])
    assert client.get(f"{API}/tokens", params={"user": "nobody"}).status_code == 404
    assert anonymous(client).get(f"{API}/tokens").status_code == 401


def test_expired_revoked_and_disabled_users_tokens_are_refused_with_401(client: TestClient, platform: Platform) -> None:
    carol = add_user(platform.database, "carol")
    dave = add_user(platform.database, "dave")
    with platform.database.write() as session:
        expired = accounts.create_token(session, "carol", expires_in=3600)
        expired.row.expires_at = utcnow() - dt.timedelta(seconds=1)
        revoked = accounts.create_token(session, "carol")
        session.flush()
        accounts.revoke_token(session, revoked.row.id)
        accounts.set_disabled(session, "dave", True)

    answers = {
        name: client.get(f"{API}/me", headers=bearer(token))
        for name, token in [
            ("expired", expired.token),
            ("revoked", revoked.token),
            ("disabled", dave),
        ]
    }

    assert {name: answer.status_code for name, answer in answers.items()} == dict.fromkeys(answers, 401)
    assert f"token {expired.row.id} expired at" in answers["expired"].json()["detail"]
    assert f"token {revoked.row.id} was revoked" in answers["revoked"].json()["detail"]
    assert "user 'dave' is disabled" in answers["disabled"].json()["detail"]
    assert as_user(client, carol, "/me")[0] == 200  # her other token still works
    assert {t["state"] for t in client.get(f"{API}/tokens", params={"user": "carol"}).json()} == {
        "active",
        "expired",
        "revoked",
    }
    with platform.database.write() as session:
        accounts.set_disabled(session, "dave", False)
    assert as_user(client, dave, "/me")[0] == 200


@pytest.mark.parametrize(
    "token",
    [
        "nonsense",
        "mrt_1_wrong-secret",
        "mrt_999999_whatever",
        "mrt_99999999999999999999999_whatever",  # a number no id column holds
        "mrt_0_whatever",
    ],
)
def test_unknown_and_forged_tokens_are_401(client: TestClient, token: str) -> None:
    response = client.get(f"{API}/me", headers=bearer(token))

    assert response.status_code == 401, response.text
    assert response.json()["detail"].startswith("unknown token")


def test_the_account_routes_are_documented_with_their_401_and_403(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    for path, codes in [("/me", {"401"}), ("/users", {"401", "403"}), ("/groups", {"401", "403"})]:
        operation = paths[f"{API}{path}"]["get"]
        assert operation["tags"] == ["accounts"]
        assert operation["summary"]
        assert codes <= set(operation["responses"])
    assert {"401", "403", "404"} <= set(paths[f"{API}/tokens"]["get"]["responses"])
