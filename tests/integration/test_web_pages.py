"""The web UI's pages through the in-process app: sign-in, CSRF, the run form, the run page with
its event stream, output downloads, and the same permissions as the API."""

from __future__ import annotations

import json
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from modelrunner.api.app import create_app
from modelrunner.auth import accounts
from modelrunner.platform import Platform
from modelrunner.store import queries
from tests.conftest import wait_for_run
from tests.identities import add_user, bearer, token_for

PASSWORD = "correct horse battery staple"
ACCESS = {
    "anonymous": [{"models": "noop", "allow": "view"}],
    "groups": {
        "viewers": [{"models": ["noop", "shapes"], "allow": "view"}],
        "runners": [{"models": ["noop", "shapes", "sleeper"], "allow": "run"}],
    },
}
SHAPES = {
    "name": "shapes",
    "title": "Every kind of field",
    "description": "Parameters of each JSON Schema type the form knows.",
    "command": ["python", "noop.py"],
    "params": {
        "type": "object",
        "required": ["r0"],
        "properties": {
            "r0": {"type": "number", "minimum": 0, "maximum": 10, "default": 2.5, "description": "reproduction number"},
            "days": {"type": "integer", "minimum": 1, "default": 7},
            "region": {"type": "string", "enum": ["north", "south"], "default": "north"},
            "smooth": {"type": "boolean", "default": True},
            "ages": {"type": "array", "items": {"type": "integer"}, "default": [10, 20]},
            "label": {"type": "string", "default": ""},
        },
    },
    "outputs": [{"path": "params.json"}],
}


@pytest.fixture
def workspace(workspace: Path) -> Path:
    """The test workspace with grants for anonymous callers and three groups, and a model whose
    schema has a field of every kind."""
    config = workspace / "modelrunner.yaml"
    spec = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**spec, "access": ACCESS}))
    folder = workspace / "shapes"
    folder.mkdir()
    (folder / "model.yaml").write_text(yaml.safe_dump(SHAPES))
    shutil.copy(workspace / "noop" / "noop.py", folder / "noop.py")
    return workspace


@pytest.fixture
def app_client(platform: Platform) -> Iterator[TestClient]:
    """The started app, anonymous (no cookie yet); ``browser()`` gives further cookie jars."""
    with TestClient(create_app(platform), follow_redirects=False) as client:
        add_user(platform.database, "vera", groups=["viewers"], password=PASSWORD)
        add_user(platform.database, "rune", groups=["runners"], password=PASSWORD)
        yield client


def browser(client: TestClient) -> TestClient:
    """Another browser (its own cookies) on the same running app."""
    return TestClient(client.app, follow_redirects=False)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def signed_in(client: TestClient, name: str) -> TestClient:
    page = client.get("/signin")
    response = client.post("/signin", data={"username": name, "password": PASSWORD, "csrf": csrf_of(page.text)})
    assert response.status_code == 303, response.text
    return client


def title_of(html: str) -> str:
    found = re.search(r"<title>([^<]+)</title>", html)
    assert found, "the page has no <title>"
    return found.group(1)


def run_count(platform: Platform) -> int:
    with platform.database.read() as session:
        return len(queries.list_runs(session, model=None, statuses=[], before_id=None, limit=1000))


def test_sign_in_with_a_wrong_password_then_the_right_one_then_sign_out(app_client: TestClient) -> None:
    page = app_client.get("/signin?next=/models/noop")
    assert page.status_code == 200 and 'id="signin"' in page.text
    assert 'name="username"' in page.text and 'name="password"' in page.text
    token = csrf_of(page.text)

    wrong = app_client.post("/signin", data={"username": "rune", "password": "nope", "csrf": token, "next": "/"})
    assert wrong.status_code == 401
    assert re.search(r'id="message"[^>]*>unknown user name or wrong password<', wrong.text)
    # A first user finds how a password is given, without a terminal's banner at hand.
    assert "modelrunner users set-password NAME" in wrong.text

    right = app_client.post(
        "/signin", data={"username": "rune", "password": PASSWORD, "csrf": token, "next": "/models/noop"}
    )
    assert right.status_code == 303 and right.headers["location"] == "/models/noop"
    cookie = right.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie

    home = app_client.get("/")
    assert 'id="signout"' in home.text and "rune" in home.text
    out = app_client.post("/signout", data={"csrf": csrf_of(home.text)})
    assert out.status_code == 303 and out.headers["location"] == "/signin"
    after = app_client.get("/signin")
    assert 'id="signout"' not in after.text and "You are signed out." in after.text


def test_sign_in_never_redirects_to_another_site(app_client: TestClient) -> None:
    page = app_client.get("/signin")
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        data = {"username": "rune", "password": PASSWORD, "csrf": csrf_of(page.text), "next": target}
        response = app_client.post("/signin", data=data)
        assert response.headers["location"] == "/"
        page = app_client.get("/signin")


def test_every_page_has_a_title(app_client: TestClient, platform: Platform) -> None:
    rune = signed_in(browser(app_client), "rune")
    run_id = platform.submit("noop", {}, submitter=_principal(platform, "rune")).run.id
    for path, status in [
        ("/signin", 200),
        ("/", 200),
        ("/models", 200),
        ("/models/shapes", 200),
        (f"/runs/{run_id}", 200),
        ("/models/nothing-here", 404),
        ("/runs/999999", 404),
    ]:
        response = rune.get(path)
        assert response.status_code == status, (path, response.text)
        assert response.headers["content-type"].startswith("text/html")
        assert title_of(response.text).endswith("modelrunner"), path


def test_a_viewer_sees_models_but_may_not_run_them(app_client: TestClient, platform: Platform) -> None:
    vera = signed_in(browser(app_client), "vera")
    models = vera.get("/models").text
    links = re.findall(r'<a class="model-link" href="([^"]+)"', models)
    assert links == ["/models/noop", "/models/shapes"]  # sleeper is not granted to viewers
    page = vera.get("/models/shapes")
    assert page.status_code == 200 and 'id="run-form"' not in page.text
    refused = vera.post("/models/shapes/runs", data={"csrf": csrf_of(page.text), "r0": "1"})
    assert refused.status_code == 403
    assert "submitting runs needs &#39;run&#39; on model &#39;shapes&#39;" in refused.text
    assert run_count(platform) == 0
    assert vera.get("/models/sleeper").status_code == 404  # not hers to see: as if there were none


def test_a_runner_submits_through_the_form(app_client: TestClient, platform: Platform) -> None:
    rune = signed_in(browser(app_client), "rune")
    page = rune.get("/models/shapes")
    assert 'id="run-form"' in page.text and 'id="submit"' in page.text
    for name in SHAPES["params"]["properties"]:  # type: ignore[index]
        assert f'id="param-{name}"' in page.text and f'id="error-{name}"' in page.text
    r0 = r'id="param-r0" name="r0" type="number" value="2.5" min="0" max="10" step="any" required'
    assert re.search(r0, page.text)
    assert re.search(r'id="param-days" name="days" type="number" value="7" min="1" step="1"', page.text)
    assert '<option value="north" selected>north</option>' in page.text
    assert re.search(r'type="checkbox" id="param-smooth" name="smooth" value="true" checked', page.text)
    assert 'value="10, 20"' in page.text and "reproduction number" in page.text

    form = {"csrf": csrf_of(page.text), "r0": "3", "days": "14", "region": "south", "ages": "1, 2,3", "label": "x"}
    response = rune.post("/models/shapes/runs", data=form)  # smooth unchecked: false
    assert response.status_code == 303
    run_id = int(response.headers["location"].removeprefix("/runs/"))
    with platform.database.read() as session:
        run = queries.get_run(session, run_id)
        assert run is not None
        expected = {"r0": 3.0, "days": 14, "region": "south", "smooth": False, "ages": [1, 2, 3], "label": "x"}
        assert run.params == expected
        assert queries.submitter_names(session, [run]) == {run.submitted_by: "rune"}


def test_a_post_without_the_right_csrf_token_is_refused(app_client: TestClient, platform: Platform) -> None:
    rune = signed_in(browser(app_client), "rune")
    token = csrf_of(rune.get("/models/noop").text)
    for form in ({"n": "1"}, {"n": "1", "csrf": ""}, {"n": "1", "csrf": token[:-2] + "xx"}):
        refused = rune.post("/models/noop/runs", data=form)
        assert refused.status_code == 403 and "reload the page" in refused.text
    # A token of another session is no better: CSRF tokens belong to one session.
    other = signed_in(browser(app_client), "rune")
    assert other.post("/models/noop/runs", data={"n": "1", "csrf": token}).status_code == 403
    assert run_count(platform) == 0
    # Sign-in and sign-out are forms too.
    assert rune.post("/signout", data={}).status_code == 403
    assert browser(app_client).post("/signin", data={"username": "rune", "password": PASSWORD}).status_code == 403


def test_a_bad_parameter_is_shown_next_to_its_field(app_client: TestClient, platform: Platform) -> None:
    rune = signed_in(browser(app_client), "rune")
    token = csrf_of(rune.get("/models/shapes").text)

    too_big = rune.post("/models/shapes/runs", data={"csrf": token, "r0": "20", "days": "3"})
    assert too_big.status_code == 422
    error = re.search(r'id="error-r0"[^>]*>([^<]*)<', too_big.text)
    assert error and error.group(1).startswith("20 is greater than the maximum")
    assert 'value="20"' in too_big.text and 'value="3"' in too_big.text  # what was typed stays

    not_a_number = rune.post("/models/shapes/runs", data={"csrf": token, "r0": "abc", "days": "1.5"})
    assert not_a_number.status_code == 422
    assert re.search(r"id=\"error-r0\"[^>]*>&#39;abc&#39; is not a number<", not_a_number.text)
    assert re.search(r"id=\"error-days\"[^>]*>&#39;1.5&#39; is not a whole number<", not_a_number.text)
    assert run_count(platform) == 0


def test_the_run_page_follows_progress_until_the_run_ends(app_client: TestClient, platform: Platform) -> None:
    rune = signed_in(browser(app_client), "rune")
    token = csrf_of(rune.get("/models/sleeper").text)
    response = rune.post("/models/sleeper/runs", data={"csrf": token, "seconds": "1.5"})
    run_page = response.headers["location"]
    page = rune.get(run_page)
    for element in ('id="run-status"', '<progress id="progress"', 'id="progress-message"', '<pre id="log"'):
        assert element in page.text
    assert 'id="cancel"' in page.text and 'id="outputs"' in page.text

    events: list[tuple[str, dict[str, object]]] = []
    with rune.stream("GET", f"{run_page}/stream") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind, json.loads(line.removeprefix("data: "))))
    assert events[-1] == ("end", {"status": "succeeded"})
    progress = [data for kind, data in events if kind == "progress"]
    percents = [data["progress"] for data in progress if data["progress"] is not None]
    assert len(percents) >= 3 and percents == sorted(percents)  # type: ignore[type-var]
    assert progress[-1]["status"] == "succeeded" and progress[-1]["progress"] == 100
    assert any(str(data["message"]).startswith("step ") for data in progress)

    done = rune.get(run_page)
    assert re.search(r'id="run-status"[^>]*>succeeded<', done.text)
    assert 'id="cancel"' not in done.text and "done.txt" in done.text


def test_an_output_downloads_as_an_attachment(app_client: TestClient, platform: Platform) -> None:
    rune = signed_in(browser(app_client), "rune")
    run_id = platform.submit("noop", {"n": 3}, submitter=_principal(platform, "rune")).run.id
    wait_for_run(lambda path: app_client.get(path, headers=_admin(platform)), run_id)
    download = rune.get(f"/runs/{run_id}/outputs/params.json")
    assert download.status_code == 200
    assert download.headers["content-type"] == "text/plain; charset=utf-8"
    assert download.headers["content-disposition"].startswith('attachment; filename="params.json"')
    assert download.headers["x-content-type-options"] == "nosniff"
    assert json.loads(download.text)["n"] == 3
    assert rune.get(f"/runs/{run_id}/outputs/missing.txt").status_code == 404
    # Anonymous callers may view noop's runs, so its outputs too; a viewer of nothing may not.
    assert browser(app_client).get(f"/runs/{run_id}/outputs/params.json").status_code == 200


def test_cancel_from_the_run_page(app_client: TestClient, platform: Platform) -> None:
    rune = signed_in(browser(app_client), "rune")
    token = csrf_of(rune.get("/models/sleeper").text)
    run_page = rune.post("/models/sleeper/runs", data={"csrf": token, "seconds": "30"}).headers["location"]
    assert rune.post(f"{run_page}/cancel", data={}).status_code == 403  # no CSRF token
    cancelled = rune.post(f"{run_page}/cancel", data={"csrf": token})
    assert cancelled.status_code == 303 and cancelled.headers["location"] == run_page
    run_id = int(run_page.removeprefix("/runs/"))
    assert wait_for_run(lambda path: app_client.get(path, headers=_admin(platform)), run_id)["status"] == "cancelled"


def test_anonymous_browsing_follows_the_anonymous_grants(app_client: TestClient, platform: Platform) -> None:
    anonymous = browser(app_client)
    models = anonymous.get("/").text
    assert re.findall(r'<a class="model-link" href="([^"]+)"', models) == ["/models/noop"]
    page = anonymous.get("/models/noop")
    assert page.status_code == 200 and 'id="run-form"' not in page.text and "Sign in</a> to run" in page.text
    hidden = anonymous.get("/models/shapes")
    assert hidden.status_code == 303 and hidden.headers["location"] == "/signin?next=%2Fmodels%2Fshapes"
    refused = anonymous.post("/models/noop/runs", data={"csrf": csrf_of(anonymous.get("/signin").text)})
    assert refused.status_code == 303 and refused.headers["location"] == "/signin"
    assert run_count(platform) == 0
    run_id = platform.submit("noop", {}, submitter=_principal(platform, "rune")).run.id
    run_page = anonymous.get(f"/runs/{run_id}")
    assert run_page.status_code == 200 and 'id="cancel"' not in run_page.text


def test_a_workspace_without_anonymous_grants_sends_everyone_to_sign_in(
    app_client: TestClient, workspace: Path
) -> None:
    config = workspace / "modelrunner.yaml"
    spec = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**spec, "access": {**ACCESS, "anonymous": []}}))
    response = browser(app_client).get("/")
    assert response.status_code == 303 and response.headers["location"] == "/signin?next=%2F"


def test_a_disabled_user_is_signed_out(app_client: TestClient, platform: Platform) -> None:
    rune = signed_in(browser(app_client), "rune")
    assert 'id="signout"' in rune.get("/models").text
    with platform.database.write() as session:
        accounts.set_disabled(session, "rune", True)
    assert rune.get("/models/sleeper").status_code == 303


def test_the_session_key_is_kept_private(app_client: TestClient, platform: Platform) -> None:
    key = platform.settings.state_dir / "session.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "/signin" not in json.dumps(app_client.get("/openapi.json").json()["paths"])


def test_static_assets_are_served_from_the_package(app_client: TestClient) -> None:
    for asset in ("htmx.min.js", "run.js", "modelrunner.css"):
        assert app_client.get(f"/static/{asset}").status_code == 200


def _principal(platform: Platform, name: str) -> accounts.Principal:
    with platform.database.read() as session:
        return accounts.principal_of(session, accounts.user(session, name))


def _admin(platform: Platform) -> dict[str, str]:
    return bearer(token_for(platform.database, "admin"))
