"""The web UI in a real browser (headless Chromium) against a real ``modelrunner serve``: signing
in, the run form and its messages, a run followed to the end without reloading, cancelling, a
phone-sized screen and the keyboard. Each main page is saved as a screenshot."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from tests.conftest import Server
from tests.e2e.conftest import MODELLER, MODELLER_PASSWORD, PHONE, screenshot

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.remote.webelement import WebElement

FINAL = {"succeeded", "failed", "timed_out", "cancelled"}
RUN_URL = re.compile(r"/runs/(\d+)(?:[/?#]|$)")


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = 10, what: str = "") -> Any:
    """Poll ``condition`` until it returns something truthy (which is returned); fail after ``timeout``."""
    from selenium.common.exceptions import (
        JavascriptException,
        NoSuchElementException,
        StaleElementReferenceException,
        TimeoutException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    # A part of a page that htmx swaps can detach what was just found.
    transient = (NoSuchElementException, StaleElementReferenceException, JavascriptException)
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=transient).until(condition)
    except TimeoutException:
        screenshot(driver, f"timeout-{what or 'wait'}")
        raise AssertionError(f"waited {timeout}s for {what or condition} at {driver.current_url}") from None


def element(driver: WebDriver, css: str, timeout: float = 10) -> WebElement:
    """The first element matching ``css`` once it is there."""
    from selenium.webdriver.common.by import By

    def found(d: WebDriver) -> WebElement | None:
        elements = d.find_elements(By.CSS_SELECTOR, css)
        return elements[0] if elements else None

    found_element: WebElement = wait_for(driver, found, timeout, css)
    return found_element


def click(driver: WebDriver, css: str, timeout: float = 10) -> None:
    """Click the first element matching ``css``, found again when htmx swapped it out between
    finding and clicking (the run's details are swapped as its status changes)."""
    from selenium.webdriver.common.by import By

    def clicked(d: WebDriver) -> bool:
        d.find_element(By.CSS_SELECTOR, css).click()
        return True

    wait_for(driver, clicked, timeout, f"a click on {css}")


def elements(driver: WebDriver, css: str) -> list[WebElement]:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def shown(driver: WebDriver, name: str) -> None:
    """The page has a title; save it as a screenshot."""
    assert driver.title.strip(), f"{driver.current_url} has no <title>"
    screenshot(driver, name)


def sign_in(driver: WebDriver, server: Server, name: str = MODELLER, password: str = MODELLER_PASSWORD) -> None:
    """Open the site, which asks to sign in, and sign in."""
    driver.get(f"{server.url}/")
    form = element(driver, "form#signin")
    form.find_element("css selector", "input[name=username]").send_keys(name)
    form.find_element("css selector", "input[name=password]").send_keys(password)
    form.find_element("css selector", "button[type=submit]").click()


def signed_in(driver: WebDriver, server: Server) -> None:
    sign_in(driver, server)
    element(driver, "button#signout")


def open_model(driver: WebDriver, server: Server, model: str) -> WebElement:
    driver.get(f"{server.url}/models/{model}")
    return element(driver, "form#run-form")


def field(driver: WebDriver, name: str) -> WebElement:
    found = element(driver, f"#param-{name}")
    assert found.get_attribute("name") == name
    return found


def set_field(driver: WebDriver, name: str, value: str) -> WebElement:
    """Replace the field's value (select-all + type, as a person would)."""
    from selenium.webdriver.common.keys import Keys

    target = field(driver, name)
    target.click()
    target.send_keys(Keys.CONTROL, "a")
    target.send_keys(Keys.DELETE)
    target.send_keys(value)
    return target


def submit_run(driver: WebDriver, **params: str) -> int:
    """Fill the run form, submit it, and wait for the run page; the run's id."""
    for name, value in params.items():
        set_field(driver, name, value)
    element(driver, "button#submit").click()
    match = wait_for(driver, lambda d: RUN_URL.search(d.current_url), 15, "the run page")
    element(driver, "#run-status")
    return int(match.group(1))


def text_of(driver: WebDriver, css: str) -> str:
    """The visible text of the first element matching ``css`` ("" when there is none), read in one
    step so that a swap in between cannot detach it."""
    text = driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.innerText : ''", css)
    return str(text or "").strip()


def progress_value(driver: WebDriver) -> float:
    value = element(driver, "progress#progress").get_attribute("value")
    return float(value or 0)


def api_run(server: Server, run_id: int) -> dict[str, Any]:
    run: dict[str, Any] = httpx.get(f"{server.url}/api/v1/runs/{run_id}", headers=server.headers).json()
    return run


# --- (a) signing in -----------------------------------------------------------------------------


def test_a_wrong_password_is_a_message_then_signing_in_lists_the_models(web_server: Server, browser: WebDriver) -> None:
    browser.get(f"{web_server.url}/")
    element(browser, "form#signin")
    shown(browser, "signin")
    assert not elements(browser, "button#signout")

    sign_in(browser, web_server, password="not the password")
    message = wait_for(browser, lambda d: text_of(d, "#message"), what="the sign-in message")
    assert "password" in message.lower(), message
    assert elements(browser, "form#signin") and not elements(browser, "button#signout")
    assert MODELLER_PASSWORD not in browser.page_source
    shown(browser, "signin-wrong-password")

    sign_in(browser, web_server)
    element(browser, "button#signout")
    if not elements(browser, "a.model-link"):
        browser.get(f"{web_server.url}/")
    element(browser, "a.model-link")
    links = {link.get_attribute("href") or "" for link in elements(browser, "a.model-link")}
    for model in ("noop", "sleeper", "failing"):
        assert f"{web_server.url}/models/{model}" in links, links
    shown(browser, "models")

    element(browser, "button#signout").click()
    wait_for(browser, lambda d: not d.find_elements("css selector", "button#signout"), what="signing out")
    browser.get(f"{web_server.url}/models/sleeper")
    element(browser, "form#signin")  # signed out: the pages ask to sign in again


# --- (b) the form's messages --------------------------------------------------------------------


def test_a_bad_value_is_a_message_next_to_its_field(web_server: Server, browser: WebDriver) -> None:
    signed_in(browser, web_server)
    form = open_model(browser, web_server, "sleeper")
    shown(browser, "model-sleeper")
    page = browser.current_url

    seconds = set_field(browser, "seconds", "-1")
    validates_in_browser = seconds.get_attribute("min") is not None and form.get_attribute("novalidate") is None
    if validates_in_browser:
        # The browser refuses to submit and says why, before any request.
        element(browser, "button#submit").click()
        time.sleep(0.3)
        assert browser.current_url == page
        assert browser.execute_script("return arguments[0].validationMessage", seconds), "no validation message"
        assert not browser.execute_script("return arguments[0].checkValidity()", seconds)

    # The server checks too: without the browser's check, the page comes back with the message.
    browser.execute_script(
        "arguments[0].removeAttribute('min'); arguments[1].setAttribute('novalidate', '')", seconds, form
    )
    element(browser, "button#submit").click()
    error = wait_for(browser, lambda d: text_of(d, "#error-seconds"), what="the message of 'seconds'")
    assert "0" in error, error  # it names the minimum
    assert not RUN_URL.search(browser.current_url)
    assert field(browser, "seconds").get_attribute("value") == "-1"  # what was typed is kept
    assert httpx.get(f"{web_server.url}/api/v1/runs", headers=web_server.headers).json()["items"] == []  # no run
    shown(browser, "model-sleeper-bad-value")


# --- (c) a run followed to the end --------------------------------------------------------------


# Records every status and progress value the page shows, and marks the loaded page: a reload
# would drop both the marker and the record.
RECORD_LIVE_UPDATES = """
window.e2eSeen = [];
const record = () => {
  const status = document.getElementById('run-status').textContent.trim();
  window.e2eSeen.push([status, document.getElementById('progress').value]);
};
record();
new MutationObserver(record).observe(
  document.body, {subtree: true, childList: true, characterData: true, attributes: true}
);
"""


def test_a_run_is_followed_to_100_percent_without_reloading(web_server: Server, browser: WebDriver) -> None:
    signed_in(browser, web_server)
    open_model(browser, web_server, "sleeper")
    run_id = submit_run(browser, seconds="2")
    browser.execute_script(RECORD_LIVE_UPDATES)
    screenshot(browser, "run-running")

    wait_for(browser, lambda d: text_of(d, "#run-status") in FINAL, 30, "the run to end")
    # The attempts and outputs arrive in place (htmx), in the same page as loaded.
    wait_for(browser, lambda d: "done.txt" in text_of(d, "table#outputs"), 10, "the outputs")
    wait_for(browser, lambda d: "succeeded" in text_of(d, "table#attempts"), 10, "the attempt's end")
    live = browser.execute_script("return window.e2eSeen || null")
    assert live is not None, "the page reloaded"
    statuses = [status for status, _ in live]
    values = [float(value) for _, value in live]
    assert statuses[0] in {"queued", "starting", "running"}, live
    assert ["succeeded", 100] in live, f"the live page never showed succeeded at 100 %: {live}"
    assert min(values) < 100, f"no progress was seen on the way: {live}"
    assert values == sorted(values), f"the progress went backwards: {values}"

    assert text_of(browser, "#run-status") == "succeeded"
    assert progress_value(browser) == 100
    assert text_of(browser, "#progress-message")
    assert not elements(browser, "button#cancel")
    assert elements(browser, "pre#log")
    assert api_run(web_server, run_id)["status"] == "succeeded"
    shown(browser, "run-succeeded")


# --- (d) cancelling ---------------------------------------------------------------------------


def test_cancelling_a_long_run(web_server: Server, browser: WebDriver) -> None:
    signed_in(browser, web_server)
    open_model(browser, web_server, "sleeper")
    run_id = submit_run(browser, seconds="60")
    wait_for(browser, lambda d: text_of(d, "#run-status") == "running", 20, "the run to start")
    click(browser, "button#cancel")
    _accept_confirmation(browser)
    wait_for(browser, lambda d: text_of(d, "#run-status") == "cancelled", 20, "the run to be cancelled")
    assert api_run(web_server, run_id)["status"] == "cancelled"
    shown(browser, "run-cancelled")


def _accept_confirmation(driver: WebDriver) -> None:
    """Accept an "are you sure?" dialog if the page asks one."""
    from selenium.common.exceptions import NoAlertPresentException

    time.sleep(0.2)
    with contextlib.suppress(NoAlertPresentException):
        driver.switch_to.alert.accept()


# --- (e) a phone-sized screen -------------------------------------------------------------------


def test_the_pages_fit_a_phone(web_server: Server, browser: WebDriver) -> None:
    width, height = PHONE
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True}
    )
    signed_in(browser, web_server)
    browser.get(f"{web_server.url}/")
    element(browser, "a.model-link")
    layout_width = browser.execute_script("return window.innerWidth")
    assert layout_width == width, f"laid out {layout_width}px wide: no <meta name=viewport content=width=device-width>?"
    scroll_width = browser.execute_script("return document.documentElement.scrollWidth")
    assert scroll_width <= width, f"the models page is {scroll_width}px wide on a {width}px screen"
    shown(browser, "models-phone")

    open_model(browser, web_server, "sleeper")
    scroll_width = browser.execute_script("return document.documentElement.scrollWidth")
    assert scroll_width <= width, f"the model page is {scroll_width}px wide on a {width}px screen"
    shown(browser, "model-sleeper-phone")


# --- (f) the keyboard ---------------------------------------------------------------------------


def test_tab_reaches_the_submit_button_and_enter_submits(web_server: Server, browser: WebDriver) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    signed_in(browser, web_server)
    open_model(browser, web_server, "noop")
    visited: list[str] = []
    for _ in range(40):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        focused = browser.execute_script(
            "const e = document.activeElement; return e ? (e.id || e.getAttribute('name') || e.tagName) : ''"
        )
        visited.append(str(focused))
        if focused == "submit":
            break
    assert visited[-1] == "submit", f"Tab went through {visited} without reaching the submit button"
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    wait_for(browser, lambda d: RUN_URL.search(d.current_url), 15, "the run page after Enter")
    wait_for(browser, lambda d: text_of(d, "#run-status") == "succeeded", 20, "the noop run to succeed")
