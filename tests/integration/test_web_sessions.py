"""Web UI sessions can be ended: a copy of a signed-in browser's cookie (what a thief or a shared
machine keeps) signs in no one once the session ended by signing out, a new password, disabling
the user, a site admin's "sign out everywhere", or idleness. Accounts change through the real CLI
(``modelrunner users ...`` as subprocesses on the same store) and the real app."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from modelrunner.api.app import create_app
from modelrunner.platform import Platform
from modelrunner.settings import Settings
from modelrunner.store.tables import WebSessionRow
from modelrunner.web.session import SESSION_COOKIE
from tests.acceptance.test_cli import ok
from tests.identities import add_user, bearer, token_for

PASSWORD = "correct horse battery staple"


@pytest.fixture
def app(platform: Platform) -> Iterator[TestClient]:
    """The started app with rune (a user) and ada (a site admin), both with a password."""
    with TestClient(create_app(platform), follow_redirects=False) as client:
        add_user(platform.database, "rune", password=PASSWORD)
        add_user(platform.database, "ada", admin=True, password=PASSWORD)
        yield client


def browser(app: TestClient, base_url: str = "http://testserver") -> TestClient:
    return TestClient(app.app, base_url=base_url, follow_redirects=False)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def signed_in(client: TestClient, name: str, password: str = PASSWORD) -> TestClient:
    page = client.get("/signin")
    response = client.post("/signin", data={"username": name, "password": password, "csrf": csrf_of(page.text)})
    assert response.status_code == 303, response.text
    return client


def copy_of(client: TestClient) -> TestClient:
    """Another machine with a copy of the browser's session cookie."""
    thief = browser(client, str(client.base_url))
    thief.cookies.set(SESSION_COOKIE, client.cookies[SESSION_COOKIE])
    return thief


def who(client: TestClient) -> str | None:
    """The name the pages greet this browser with; None when they take it for no one."""
    page = client.get("/schedules")
    found = re.search(r"Signed in as <strong>([^<]+)</strong>", page.text)
    return found.group(1) if found else None


def users_cli(settings: Settings, *args: str, stdin: str | None = None) -> str:
    """``modelrunner users ARGS`` on the app's store, as the administrator runs it."""
    env = {
        **os.environ,
        "MODELRUNNER_WORKSPACE": str(settings.workspace),
        "MODELRUNNER_DATA_DIR": str(settings.data_dir),
        "MODELRUNNER_DATABASE_URL": str(settings.database_url),
    }
    if stdin is None:
        return ok("users", *args, env=env)
    result = subprocess.run(
        [sys.executable, "-m", "modelrunner", "users", *args], env=env, input=stdin, capture_output=True, text=True
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return result.stdout


def test_a_cookie_copied_before_sign_out_signs_in_no_one_after_it(app: TestClient) -> None:
    rune = signed_in(browser(app), "rune")
    thief = copy_of(rune)
    assert who(thief) == "rune"  # the copy works while the session lives...

    page = rune.get("/schedules")
    assert rune.post("/signout", data={"csrf": csrf_of(page.text)}).status_code == 303

    assert who(thief) is None  # ...and not after the owner signed out
    assert who(rune) is None


def test_a_new_password_ends_every_session_of_the_user(app: TestClient, settings: Settings) -> None:
    rune = signed_in(browser(app), "rune")
    thief, ada = copy_of(rune), signed_in(browser(app), "ada")

    users_cli(settings, "set-password", "rune", "--password-stdin", stdin="a brand new passphrase\n")

    assert who(thief) is None and who(rune) is None
    assert who(ada) == "ada"  # other users stay signed in
    assert who(signed_in(browser(app), "rune", "a brand new passphrase")) == "rune"


def test_disabling_a_user_ends_their_sessions_for_good(app: TestClient, settings: Settings) -> None:
    thief = copy_of(signed_in(browser(app), "rune"))

    assert "web sessions no longer work" in users_cli(settings, "disable", "rune")
    assert who(thief) is None
    users_cli(settings, "enable", "rune")
    assert who(thief) is None  # enabling them again does not bring the old session back


def test_an_admin_signs_a_user_out_everywhere_from_the_users_page_the_api_and_the_cli(
    app: TestClient, platform: Platform, settings: Settings
) -> None:
    laptop, phone = signed_in(browser(app), "rune"), signed_in(browser(app), "rune")
    thief = copy_of(laptop)
    ada = signed_in(browser(app), "ada")

    page = ada.get("/admin/users")
    assert 'action="/admin/users/rune/sign-out"' in page.text
    forged = ada.post("/admin/users/rune/sign-out", data={"csrf": "not-the-token"})
    assert forged.status_code == 403 and who(thief) == "rune"  # a form from elsewhere does nothing
    done = ada.post("/admin/users/rune/sign-out", data={"csrf": csrf_of(page.text)})
    assert done.status_code == 303 and done.headers["location"] == "/admin/users"
    assert "Signed rune out of 2 web sessions." in ada.get("/admin/users").text
    assert who(thief) is None and who(laptop) is None and who(phone) is None
    assert who(ada) == "ada"

    # Through the API: a user who is not a site admin cannot sign others out; a site admin can.
    again = signed_in(browser(app), "rune")
    eve = bearer(add_user(platform.database, "eve"))
    refused = app.post("/api/v1/users/rune/sign-out", headers=eve)
    assert refused.status_code == 403 and "site admin" in refused.json()["detail"]
    unknown = app.post("/api/v1/users/nobody/sign-out", headers=bearer(_admin_token(platform)))
    assert unknown.status_code == 404 and "nobody" in unknown.json()["detail"]
    answer = app.post("/api/v1/users/rune/sign-out", headers=bearer(_admin_token(platform)))
    assert answer.status_code == 200 and answer.json() == {"user": "rune", "sessions_ended": 1}
    assert who(again) is None

    again = signed_in(browser(app), "rune")
    assert "signed user 'rune' out of 1 web session" in users_cli(settings, "sign-out", "rune")
    assert who(again) is None


def test_a_session_unused_for_the_idle_time_ends_and_one_in_use_does_not(settings: Settings) -> None:
    # An idle limit of seconds, not one: on a loaded machine a request may wait that long.
    platform = Platform(settings.model_copy(update={"session_idle_seconds": 3.0}))
    with TestClient(create_app(platform), follow_redirects=False) as app:
        add_user(platform.database, "rune", password=PASSWORD)
        busy, idle = signed_in(browser(app), "rune"), signed_in(browser(app), "rune")
        thief = copy_of(idle)
        for _ in range(14):  # 7 s of use, over twice the idle limit
            assert who(busy) == "rune"
            time.sleep(0.5)
        assert who(busy) == "rune"
        assert who(thief) is None and who(idle) is None


def test_the_database_keeps_only_a_digest_of_the_cookie_secret(app: TestClient, platform: Platform) -> None:
    rune = signed_in(browser(app), "rune")
    payload = rune.cookies[SESSION_COOKIE].split(".")[0]
    content = json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4)))
    assert set(content) == {"sid", "csrf"}  # no user id: the database says who it is
    with platform.database.read() as session:
        stored = list(session.scalars(select(WebSessionRow.secret_hash)))
    assert stored == [hashlib.sha256(content["sid"].encode()).hexdigest()]


@pytest.mark.parametrize(
    ("base_url", "forced", "secure"),
    [("http://testserver", False, False), ("https://testserver", False, True), ("http://testserver", True, True)],
)
def test_the_cookie_is_secure_over_https_or_when_forced(
    platform: Platform, base_url: str, forced: bool, secure: bool
) -> None:
    platform.settings = platform.settings.model_copy(update={"session_cookie_secure": forced})
    with TestClient(create_app(platform), base_url=base_url, follow_redirects=False) as client:
        add_user(platform.database, "rune", password=PASSWORD)
        page = client.get("/signin")
        answer = client.post("/signin", data={"username": "rune", "password": PASSWORD, "csrf": csrf_of(page.text)})
    cookie = answer.headers["set-cookie"].lower()
    assert cookie.startswith(f"{SESSION_COOKIE}=") and "httponly" in cookie and "samesite=lax" in cookie
    assert ("; secure" in cookie) is secure
    assert "max-age=1209600" in cookie  # 14 days, the session's longest life


def _admin_token(platform: Platform) -> str:
    return token_for(platform.database, "ada")
