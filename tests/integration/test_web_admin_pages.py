"""The web UI's datasets, schedules and site-admin pages through the in-process app: what each
shows, and that each refuses exactly whom the API refuses."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from modelrunner.auth import accounts
from modelrunner.platform import Platform
from modelrunner.web import dataset_pages
from tests import data_fixtures
from tests.conftest import free_port, wait_for_run
from tests.data_fixtures import GitRepo
from tests.dataset_workspace import build_workspace, git_dataset
from tests.identities import add_user, bearer
from tests.integration.runs_api import submit, wait_until
from tests.integration.test_web_pages import PASSWORD, browser, signed_in, title_of

git_repo = data_fixtures.git_repo

ADMIN_PAGES = ["/admin", "/admin/users", "/admin/groups", "/admin/schedules", "/admin/deliveries"]
OPTION_VALUE = "opt-value-Zq81-never-shown"
HOOK_PASSWORD = "hook-pass-Zq81-never-shown"
HOOK_QUERY = "hook-query-Zq81-never-shown"


@pytest.fixture
def workspace(tmp_path: Path, git_repo: GitRepo) -> Path:
    """The dataset workspace (``counter`` reads ``cases``) plus ``drop``, a dataset no model reads
    with a storage option; ``counters`` may view counter, ``others`` noop; quick webhooks; noop
    has a schedule in Paris time, counter a switched-off one."""
    drop = {"source": "files", "url": str(tmp_path / "drop"), "options": {"secret_key": OPTION_VALUE}}
    folder = build_workspace(tmp_path / "workspace", {"cases": git_dataset(git_repo), "drop": drop})
    config = folder / "modelrunner.yaml"
    spec = yaml.safe_load(config.read_text())
    spec["access"] = {
        "groups": {
            "counters": [{"models": "counter", "allow": "view"}],
            "others": [{"models": "noop", "allow": "run"}],
        }
    }
    spec["notifications"] = {"webhooks": {"attempts": 2, "backoff_seconds": 0.2, "timeout_seconds": 5}}
    config.write_text(yaml.safe_dump(spec, sort_keys=False))
    _schedules(folder / "noop", [{"name": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Paris"}])
    _schedules(folder / "counter", [{"name": "weekly", "cron": "0 6 * * 1", "enabled": False}])
    return folder


def _schedules(model: Path, schedules: list[dict[str, Any]]) -> None:
    path = model / "model.yaml"
    spec = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**spec, "schedules": schedules}, sort_keys=False))


@pytest.fixture
def people(client: TestClient, platform: Platform) -> dict[str, str]:
    """Who signs in (all with PASSWORD): ada the site admin, cora (counters), otto (others) and
    dora (disabled); their API tokens by name."""
    tokens = {
        "ada": add_user(platform.database, "ada", admin=True, email="ada@example.org", password=PASSWORD),
        "cora": add_user(platform.database, "cora", groups=["counters"], email="cora@example.org", password=PASSWORD),
        "otto": add_user(platform.database, "otto", groups=["others"], password=PASSWORD),
        "dora": add_user(platform.database, "dora", groups=["others", "counters"], password=PASSWORD),
    }
    with platform.database.write() as session:
        accounts.set_disabled(session, "dora", True)
    return tokens


def synced(client: TestClient, git_repo: GitRepo) -> list[str]:
    """Two versions of ``cases``, synced through the API; their shas, newest first."""
    first = git_repo.commit({"data/cases.csv": "day,cases\n1,10\n"}, "first cases")
    second = git_repo.commit({"data/cases.csv": "day,cases\n1,10\n2,12\n"}, "second cases")
    sync_id = client.post("/api/v1/datasets/cases/sync").json()["id"]

    def finished() -> dict[str, Any] | None:
        row: dict[str, Any] = client.get(f"/api/v1/datasets/cases/syncs/{sync_id}").json()
        return row if row["status"] in ("succeeded", "failed") else None

    assert wait_until(finished, 20, "the sync of cases")["status"] == "succeeded"
    return [second, first]


def cells(html: str, table: str) -> list[list[str]]:
    """The text of each body row's cells of ``<table id=table>``, tags left out."""
    found = re.search(rf'<table id="{table}">.*?<tbody>(.*?)</tbody>', html, re.S)
    assert found, f"no table {table}"
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", found.group(1), re.S)
    return [
        [" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in rows
    ]


# --- datasets -----------------------------------------------------------------------------------


def test_a_dataset_page_lists_its_versions_newest_first(
    client: TestClient, people: dict[str, str], git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    newest, oldest = synced(client, git_repo)
    cora = signed_in(browser(client), "cora")

    listing = cora.get("/datasets")
    assert listing.status_code == 200
    assert re.findall(r'class="dataset-link" href="([^"]+)"', listing.text) == ["/datasets/cases"]
    [row] = cells(listing.text, "datasets")
    assert row[0] == "cases Cases" and row[1:3] == ["git", "2"]
    assert row[3].startswith(newest[:12]) and row[4].startswith("succeeded")

    page = cora.get("/datasets/cases")
    assert page.status_code == 200 and title_of(page.text).startswith("Dataset cases")
    assert re.findall(r'<code title="([0-9a-f]{40})">([0-9a-f]{12})</code>', page.text) == [
        (newest, newest[:12]),
        (oldest, oldest[:12]),
    ]
    versions = cells(page.text, "versions")
    assert [v[0] for v in versions] == [newest[:12], oldest[:12]]
    assert versions[0][1] == "2024-01-01 00:02 UTC" and versions[1][1] == "2024-01-01 00:01 UTC"  # commit times
    assert versions[0][3:] == ["1", "20 B", "second cases"]
    assert '<a href="/models/counter">counter</a>' in page.text
    assert str(git_repo.path) in page.text and "<dd><code>main</code></dd>" in page.text

    # Paged with ?offset=, as the API's versions are.
    monkeypatch.setattr(dataset_pages, "VERSIONS_PER_PAGE", 1)
    first_page = cora.get("/datasets/cases")
    assert [v[0] for v in cells(first_page.text, "versions")] == [newest[:12]]
    assert 'href="?offset=1" rel="next"' in first_page.text
    second_page = cora.get("/datasets/cases?offset=1")
    assert [v[0] for v in cells(second_page.text, "versions")] == [oldest[:12]]
    assert 'href="?offset=0" rel="prev"' in second_page.text and 'rel="next"' not in second_page.text


def test_a_dataset_is_refused_to_whom_the_api_refuses_it(
    client: TestClient, people: dict[str, str], git_repo: GitRepo
) -> None:
    synced(client, git_repo)
    otto = signed_in(browser(client), "otto")  # may view noop, which reads no dataset
    assert "dataset-link" not in otto.get("/datasets").text
    # The API names the grant he lacks (403); a page answers as for a dataset that does not exist.
    assert client.get("/api/v1/datasets/cases", headers=bearer(people["otto"])).status_code == 403
    for path in ("/datasets/cases", "/datasets/drop", "/datasets/nothing"):
        page = otto.get(path)
        name = path.rsplit("/", 1)[1]
        assert page.status_code == 404, path
        assert page.headers["content-type"].startswith("text/html")
        assert f"unknown dataset '{name}'" in page.text.replace("&#39;", "'")
        assert "noop" not in page.text and "reads" not in page.text  # nor which models read it
    unknown = client.get("/api/v1/datasets/nothing")  # a site admin's call: the dataset does not exist
    assert unknown.json()["detail"] in otto.get("/datasets/nothing").text.replace("&#39;", "'")

    anonymous = browser(client)  # this workspace grants anonymous callers nothing
    for path in ("/datasets", "/datasets/cases", "/schedules"):
        response = anonymous.get(path)
        assert response.status_code == 303 and response.headers["location"].startswith("/signin?next=%2F"), path


def test_storage_option_values_are_never_shown(client: TestClient, people: dict[str, str]) -> None:
    ada = signed_in(browser(client), "ada")
    assert re.findall(r'class="dataset-link" href="([^"]+)"', ada.get("/datasets").text) == [
        "/datasets/cases",
        "/datasets/drop",
    ]  # a site admin sees every dataset, even one no model reads
    page = ada.get("/datasets/drop")
    assert page.status_code == 200 and "secret_key" in page.text
    assert OPTION_VALUE not in page.text
    assert "No version recorded yet" in page.text and "no model you may view" in page.text


# --- schedules ----------------------------------------------------------------------------------


def test_schedules_show_their_next_fire_time_to_whom_may_view_their_model(
    client: TestClient, people: dict[str, str]
) -> None:
    fired = client.post("/api/v1/schedules/noop/nightly/run").json()
    wait_for_run(client.get, fired["run_ids"][0])
    listed = {s["name"]: s for s in client.get("/api/v1/schedules").json()}
    next_fire = listed["noop/nightly"]["next_fire_at"].replace("+00:00", "Z")

    ada = signed_in(browser(client), "ada")
    for path in ("/admin/schedules", "/schedules"):
        page = ada.get(path)
        assert page.status_code == 200
        rows = {row[0]: row for row in cells(page.text, "schedules")}
        assert list(rows) == ["counter/weekly", "noop/nightly"]
        nightly = rows["noop/nightly"]
        assert nightly[1:3] == ["noop", "0 3 * * * Europe/Paris"]
        assert f'<time datetime="{next_fire[:19]}Z">' in page.text
        assert re.search(r"\d\d:\d\d UTC \d{4}-\d\d-\d\d 03:00 Europe/Paris$", nightly[3]), nightly[3]
        assert nightly[4].startswith("submitted") and f"#{fired['run_ids'][0]}" in nightly[4]
        assert nightly[5] == "active"
        assert rows["counter/weekly"][3] == "none" and rows["counter/weekly"][4] == "never fired"
        assert rows["counter/weekly"][5] == "paused enabled: false"

    # As the API's list: the schedules of the models the caller may view.
    for name, expected in (("otto", ["noop/nightly"]), ("cora", ["counter/weekly"])):
        page = signed_in(browser(client), name).get("/schedules")
        api = client.get("/api/v1/schedules", headers=bearer(people[name])).json()
        assert [row[0] for row in cells(page.text, "schedules")] == [s["name"] for s in api] == expected


# --- admin --------------------------------------------------------------------------------------


def test_an_admin_sees_users_and_groups(client: TestClient, people: dict[str, str]) -> None:
    ada = signed_in(browser(client), "ada")
    home = ada.get("/admin")
    assert home.status_code == 200
    for path in ADMIN_PAGES[1:]:
        assert f'href="{path}"' in home.text
    assert '<a href="/admin">Admin</a>' in ada.get("/models").text  # in the site's navigation

    users = {row[0]: row for row in cells(ada.get("/admin/users").text, "users")}
    assert list(users) == ["ada", "admin", "cora", "dora", "otto"]
    assert users["ada"][1:5] == ["ada@example.org", "", "yes", "active"]
    assert users["cora"][1:5] == ["cora@example.org", "counters", "no", "active"]
    assert users["dora"][2:5] == ["counters, others", "no", "disabled"]
    assert users["otto"][5] == "password, 1 token"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", users["otto"][6])

    groups = {row[0]: row for row in cells(ada.get("/admin/groups").text, "groups")}
    assert groups["counters"][1] == "cora, dora" and groups["others"][1] == "dora, otto"

    for path in ADMIN_PAGES:
        text = ada.get(path).text
        assert "$argon2" not in text and "mrt_" not in text  # no password hash, no token
        assert title_of(text).endswith("modelrunner")


def test_an_admin_sees_every_users_deliveries_without_secrets(client: TestClient, people: dict[str, str]) -> None:
    hook = f"http://hook-user:{HOOK_PASSWORD}@127.0.0.1:{free_port()}/hooks?token={HOOK_QUERY}"
    created = client.post(
        "/api/v1/subscriptions",
        json={"model": "noop", "channel": "webhook", "url": hook},
        headers=bearer(people["otto"]),
    )
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    run = submit(client, "noop", {"n": 7})
    wait_for_run(client.get, run["id"])

    def failed() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = client.get("/api/v1/deliveries", params={"status": ["failed"]}).json()
        return found

    [delivery] = wait_until(failed, 30, "the webhook's delivery to fail (nothing listens)")

    page = signed_in(browser(client), "ada").get("/admin/deliveries")
    assert page.status_code == 200
    [row] = cells(page.text, "deliveries")
    assert row[0] == str(delivery["id"]) and row[2:4] == ["otto", "webhook"]
    assert row[4] == f"run.succeeded run {run['id']}" and f'href="/runs/{run["id"]}"' in page.text
    assert row[5] == "failed" and row[6] == "2" and row[7] == delivery["last_error"] != ""
    for hidden in (HOOK_PASSWORD, HOOK_QUERY, secret):
        assert hidden not in page.text


def test_only_a_site_admin_opens_the_admin_pages(client: TestClient, people: dict[str, str]) -> None:
    cora = signed_in(browser(client), "cora")
    assert 'href="/admin"' not in cora.get("/datasets").text
    anonymous = browser(client)
    for path in ADMIN_PAGES:
        refused = cora.get(path)
        assert refused.status_code == 403, path
        assert "needs a site admin; cora is not one" in refused.text
        assert title_of(refused.text).startswith("Not allowed")
        redirected = anonymous.get(path)
        assert redirected.status_code == 303
        assert redirected.headers["location"] == "/signin?next=" + path.replace("/", "%2F")
    # The API agrees.
    assert client.get("/api/v1/users", headers=bearer(people["cora"])).status_code == 403
