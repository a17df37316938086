"""Fixtures of the browser tests: a real ``modelrunner serve`` on the test workspace with users who
sign in with passwords, and a headless Chromium driven by Selenium.

The browser is Debian's ``chromium`` with its ``chromium-driver`` (``.ci/run`` installs both);
nothing is ever downloaded: the driver's path is given, and Selenium Manager is told not to fetch.
Screenshots go to ``MODELRUNNER_SCREENSHOTS`` (default ``tests/e2e/screenshots/``), one PNG per page.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from modelrunner.store.database import Database
from tests.conftest import TESTS, Server
from tests.identities import add_user

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = Path(os.environ.get("MODELRUNNER_SCREENSHOTS") or TESTS / "e2e" / "screenshots")

MODELLER = "alice"
MODELLER_PASSWORD = "correct horse battery"
DESKTOP = (1280, 900)
PHONE = (375, 800)

# Everyone signed in may see the models; the group "modellers" may run them.
ACCESS = """
access:
  signed_in:
    - {models: "*", allow: view}
  groups:
    modellers:
      - {models: "*", allow: run}
"""


@pytest.fixture
def web_server(server_env: dict[str, str], workspace: Path, tmp_path: Path) -> Iterator[Server]:
    """``modelrunner serve`` on a copy of tests/workspace with an ``access:`` section; the user
    ``alice`` (group ``modellers``, may run every model) signs in with ``MODELLER_PASSWORD``."""
    with (workspace / "modelrunner.yaml").open("a") as config:
        config.write(ACCESS)
    running = Server(server_env, tmp_path / "server.log")
    running.start()
    database = Database(server_env["MODELRUNNER_DATABASE_URL"])
    try:
        add_user(database, MODELLER, groups=["modellers"], password=MODELLER_PASSWORD)
    finally:
        database.dispose()
    try:
        yield running
    finally:
        running.stop()


def _missing_browser() -> str | None:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        return (
            f"{' and '.join(missing)} not installed: the browser tests need Debian's chromium and "
            "chromium-driver (`apt-get install chromium chromium-driver`; .ci/run installs them)"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebDriver]:
    """A headless Chromium at 1280x900 (``set_window_size`` for other sizes); skipped, saying why,
    where chromium or chromium-driver is not installed."""
    reason = _missing_browser()
    if reason:
        pytest.skip(reason)
    # Selenium Manager would otherwise look for (and download) a browser and driver of its own.
    monkeypatch.setenv("SE_AVOID_DOWNLOADS", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    options.add_argument("--headless=new")
    options.add_argument(f"--window-size={DESKTOP[0]},{DESKTOP[1]}")
    options.add_argument("--disable-dev-shm-usage")
    options.add_argument("--disable-gpu")
    options.add_argument("--no-first-run")
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium's sandbox refuses to run as root
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_window_size(*DESKTOP)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: WebDriver, name: str) -> Path:
    """Save what the browser shows as ``<SCREENSHOTS>/<name>.png`` (replacing an older one)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^a-z0-9_-]+', '-', name.lower())}.png"
    driver.save_screenshot(str(path))
    return path


def keep_server_log(server: Server, name: str) -> None:
    """Copy the server's log next to the screenshots (for a failing test's post-mortem)."""
    if server.log_path.exists():
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(server.log_path, SCREENSHOTS / f"{name}.server.log")
