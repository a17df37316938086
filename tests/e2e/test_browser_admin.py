"""The datasets, schedules and site-admin pages in a real browser (headless Chromium) against a
real ``modelrunner serve``: each page shows what it is for, fits a phone, and its links are
reached with the keyboard. Each page is saved as a screenshot."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import yaml

from modelrunner.store.database import Database
from tests import data_fixtures
from tests.conftest import Server, free_port
from tests.data_fixtures import GitRepo
from tests.dataset_workspace import build_workspace, git_dataset
from tests.e2e.conftest import PHONE
from tests.e2e.test_browser import element, elements, shown, sign_in, text_of, wait_for
from tests.identities import add_user, bearer
from tests.integration.runs_api import wait_until

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

git_repo = data_fixtures.git_repo

ADMIN = "ada"
ADMIN_PASSWORD = "admin horse battery staple"


@pytest.fixture
def workspace(tmp_path: Path, git_repo: GitRepo) -> Path:
    """The dataset workspace (``counter`` reads the git dataset ``cases``), quick webhooks, and a
    schedule on noop in Paris time; ``web_server`` adds its ``access:`` section."""
    folder = build_workspace(tmp_path / "workspace", {"cases": git_dataset(git_repo)})
    config = folder / "modelrunner.yaml"
    spec = yaml.safe_load(config.read_text())
    spec["notifications"] = {"webhooks": {"attempts": 2, "backoff_seconds": 0.2, "timeout_seconds": 5}}
    config.write_text(yaml.safe_dump(spec, sort_keys=False))
    model = folder / "noop" / "model.yaml"
    noop = yaml.safe_load(model.read_text())
    noop["schedules"] = [{"name": "nightly", "cron": "0 3 * * *", "timezone": "Europe/Paris"}]
    model.write_text(yaml.safe_dump(noop, sort_keys=False))
    return folder


@pytest.fixture
def filled(web_server: Server, git_repo: GitRepo) -> Server:
    """The server with a site admin who signs in with a password, two synced versions of
    ``cases``, a fired schedule, and a webhook delivery that failed (nothing listens)."""
    database = Database(web_server.env["MODELRUNNER_DATABASE_URL"])
    try:
        token = add_user(database, ADMIN, admin=True, email="ada@example.org", password=ADMIN_PASSWORD)
    finally:
        database.dispose()
    api = httpx.Client(base_url=f"{web_server.url}/api/v1", headers=bearer(token), timeout=10)
    with api:
        git_repo.commit({"data/cases.csv": "day,cases\n1,10\n"}, "first cases")
        git_repo.commit({"data/cases.csv": "day,cases\n1,10\n2,12\n"}, "second cases")
        sync_id = api.post("/datasets/cases/sync").json()["id"]
        wait_until(lambda: _finished(api.get(f"/datasets/cases/syncs/{sync_id}").json()), 20, "the sync")
        api.post("/schedules/noop/nightly/run").raise_for_status()
        hook = f"http://127.0.0.1:{free_port()}/hooks/modelrunner"
        api.post("/subscriptions", json={"model": "noop", "channel": "webhook", "url": hook}).raise_for_status()
        api.post("/models/noop/runs", json={"params": {"n": 5}}).raise_for_status()
        wait_until(lambda: api.get("/deliveries", params={"status": "failed"}).json(), 30, "a failed delivery")
    return web_server


def _finished(sync: dict[str, Any]) -> bool:
    return bool(sync["status"] in ("succeeded", "failed"))


def signed_in_admin(driver: WebDriver, server: Server) -> None:
    sign_in(driver, server, ADMIN, ADMIN_PASSWORD)
    element(driver, "button#signout")


def test_the_datasets_and_admin_pages_show_what_they_are_for(filled: Server, browser: WebDriver) -> None:
    signed_in_admin(browser, filled)
    browser.get(f"{filled.url}/datasets")
    element(browser, "a.dataset-link").click()
    wait_for(browser, lambda d: d.current_url.endswith("/datasets/cases"), what="the dataset page")
    assert len(elements(browser, "#versions tbody tr code")) == 2
    assert "second cases" in text_of(browser, "#versions")
    shown(browser, "dataset-cases")
    browser.get(f"{filled.url}/datasets")
    assert "cases" in text_of(browser, "#datasets")
    shown(browser, "datasets")

    element(browser, "header nav a[href='/admin']").click()
    for name in ("users", "groups", "schedules", "deliveries"):
        assert elements(browser, f"#admin-pages a[href='/admin/{name}']")
    shown(browser, "admin")

    # What each page must show: (the element, the words in it).
    expected = {
        "users": ("#users", [ADMIN, "alice", "ada@example.org"]),
        "groups": ("#groups", ["modellers"]),
        "schedules": ("#schedules .next-fire", ["UTC", "03:00 Europe/Paris"]),
        "deliveries": ("#deliveries", ["webhook", "failed", "ConnectError"]),
    }
    for name, (css, words) in expected.items():
        browser.get(f"{filled.url}/admin/{name}")
        text = text_of(browser, css)
        assert all(word in text for word in words), (name, text)
        shown(browser, f"admin-{name}")


def test_the_pages_fit_a_phone_and_a_non_admin_is_refused(filled: Server, browser: WebDriver) -> None:
    width, height = PHONE
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True}
    )
    signed_in_admin(browser, filled)
    for path, name in (
        ("/datasets/cases", "dataset-cases-phone"),
        ("/admin/users", "admin-users-phone"),
        ("/admin/schedules", "admin-schedules-phone"),
        ("/admin/deliveries", "admin-deliveries-phone"),
    ):
        browser.get(f"{filled.url}{path}")
        element(browser, "table")
        scroll_width = browser.execute_script("return document.documentElement.scrollWidth")
        assert scroll_width <= width, f"{path} is {scroll_width}px wide on a {width}px screen"
        shown(browser, name)

    element(browser, "button#signout").click()
    sign_in(browser, filled)  # alice: may run every model, is no site admin
    element(browser, "button#signout")
    assert not elements(browser, "header nav a[href='/admin']")
    browser.get(f"{filled.url}/admin/users")
    assert "needs a site admin" in text_of(browser, "#error")
    shown(browser, "admin-refused")
    browser.get(f"{filled.url}/schedules")
    assert "noop/nightly" in text_of(browser, "#schedules")  # her models' schedules, next fire time and all
    shown(browser, "schedules")


def test_tab_reaches_a_dataset_and_enter_opens_it(filled: Server, browser: WebDriver) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    signed_in_admin(browser, filled)
    browser.get(f"{filled.url}/datasets")
    element(browser, "#datasets")
    visited: list[str] = []
    for _ in range(20):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        focused = browser.execute_script("const e = document.activeElement; return e ? e.getAttribute('href') : ''")
        visited.append(str(focused))
        if focused == "/datasets/cases":
            break
    assert visited[-1] == "/datasets/cases", f"Tab went through {visited} without reaching the dataset"
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    wait_for(browser, lambda d: d.current_url.endswith("/datasets/cases"), what="the dataset page after Enter")
