"""A pipeline run's step graph in a real browser (headless Chromium) against a real ``modelrunner
serve``: every step's box is shown, the states change live (htmx swaps the graph in place, the page
does not reload, the page's CSP is never broken), and the graph fits a desktop and a phone.
Screenshots of both sizes are saved."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.conftest import TESTS, Server
from tests.e2e.conftest import PHONE, screenshot
from tests.e2e.test_browser import element, signed_in, text_of, wait_for

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

STEPS = ["estimate", "check", "summarise", "publish"]

# Marks the page as loaded (a reload forgets it), keeps the graph's element to tell a swap, and
# records every CSP violation from here on.
WATCH = """
window.e2eLoaded = true;
window.e2eGraph = document.getElementById('pipeline-graph');
window.e2eViolations = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.e2eViolations.push(e.violatedDirective + ' ' + e.blockedURI);
});
"""

# Each step box's place on the page and whether something else is drawn over its middle.
BOXES = """
return Array.from(document.querySelectorAll('#pipeline-graph g.pg-step')).map(function (g) {
  g.scrollIntoView({block: 'center', inline: 'center'});
  const r = g.getBoundingClientRect();
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
  return {
    step: g.dataset.step, left: r.left + window.scrollX, right: r.right + window.scrollX,
    width: r.width, height: r.height, shown: !!hit && g.contains(hit),
    state: g.querySelector('.pg-state').textContent.trim(),
  };
});
"""


@pytest.fixture
def workspace(workspace: Path) -> Path:
    """tests/workspace plus the test pipeline as ``regional`` (copied here: other tests count the
    models of tests/workspace)."""
    shutil.copytree(TESTS / "pipeline_model", workspace / "regional")
    return workspace


def states(driver: WebDriver) -> dict[str, str]:
    found = driver.execute_script(
        "return Array.from(document.querySelectorAll('#pipeline-graph g.pg-step'))"
        ".map(g => [g.dataset.step, g.querySelector('.pg-state').textContent.trim()])"
    )
    return dict(found)


def scroll_to(driver: WebDriver, css: str) -> None:
    driver.execute_script("document.querySelector(arguments[0]).scrollIntoView()", css)


def boxes(driver: WebDriver) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = driver.execute_script(BOXES)
    return found


def submit_pipeline(server: Server, **params: Any) -> int:
    response = httpx.post(
        f"{server.url}/api/v1/models/regional/runs", json={"params": params}, headers=server.headers, timeout=10
    )
    assert response.status_code == 201, response.text
    run_id: int = response.json()["id"]
    return run_id


def test_a_pipeline_run_shows_its_steps_changing_live(web_server: Server, browser: WebDriver) -> None:
    signed_in(browser, web_server)
    # Two slots, five regions of 2 s each: the fan-out takes a few seconds; "west" fails.
    run_id = submit_pipeline(web_server, sleep=2, fail_region="west")
    browser.get(f"{web_server.url}/runs/{run_id}")
    element(browser, "#pipeline-graph g.pg-step")
    browser.execute_script(WATCH)
    first = states(browser)
    assert list(first) == STEPS
    assert first["summarise"] == "waiting", first
    assert element(browser, "#pipeline-graph").get_attribute("hx-trigger") == "every 2s"
    wait_for(browser, lambda d: states(d)["estimate"] == "running", 20, "the fan-out to run")
    assert all(box["width"] > 0 and box["height"] > 0 and box["shown"] for box in boxes(browser)), boxes(browser)
    screenshot(browser, "pipeline-running")

    # The states change on the page as loaded: htmx swapped the graph, nothing reloaded.
    wait_for(browser, lambda d: states(d)["summarise"] == "blocked", 60, "summarise to be blocked")
    assert browser.execute_script("return window.e2eLoaded === true"), "the page reloaded"
    assert browser.execute_script("return !window.e2eGraph.isConnected"), "the graph was not swapped"
    wait_for(browser, lambda d: text_of(d, "#run-status") == "failed", 30, "the pipeline to end")
    wait_for(browser, lambda d: d.find_element("id", "pipeline-graph").get_attribute("hx-trigger") is None, 10)
    assert states(browser) == {"estimate": "failed", "check": "succeeded", "summarise": "blocked", "publish": "blocked"}
    assert "5/5 items done, 1 failed" in text_of(browser, "#pipeline-graph")
    assert browser.execute_script("return window.e2eViolations") == []
    shown = boxes(browser)
    assert [box["step"] for box in shown] == STEPS
    assert all(box["width"] > 0 and box["height"] > 0 and box["shown"] for box in shown), shown
    scroll_to(browser, "#pipeline-graph")
    screenshot(browser, "pipeline-final")

    # The failed fan-out's box leads to the failed item's run.
    browser.find_element("css selector", '#pipeline-graph a.pg-link g[data-step="estimate"]').click()
    wait_for(browser, lambda d: d.current_url != f"{web_server.url}/runs/{run_id}", 10, "the item's page")
    item = httpx.get(
        f"{web_server.url}/api/v1{browser.current_url.removeprefix(web_server.url)}", headers=web_server.headers
    ).json()
    assert (item["step"], item["item_key"], item["status"]) == ("estimate", "west", "failed")


def test_the_graph_fits_a_phone(web_server: Server, browser: WebDriver) -> None:
    run_id = submit_pipeline(web_server, regions=["north", "south"])
    width, height = PHONE
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True}
    )
    signed_in(browser, web_server)
    browser.get(f"{web_server.url}/runs/{run_id}")
    wait_for(browser, lambda d: text_of(d, "#run-status") == "succeeded", 30, "the pipeline to succeed")
    wait_for(browser, lambda d: set(states(d).values()) == {"succeeded"}, 10, "every step to succeed")

    scroll_width = browser.execute_script("return document.documentElement.scrollWidth")
    assert scroll_width <= width, f"the run page is {scroll_width}px wide on a {width}px screen"
    shown = boxes(browser)
    assert [box["step"] for box in shown] == STEPS
    for box in shown:
        assert box["shown"] and box["left"] >= 0 and box["right"] <= width, box
        assert box["width"] >= 140, f"{box['step']}'s box is shrunk to {box['width']:.0f}px"
    scroll_to(browser, "#pipeline-graph")
    screenshot(browser, "pipeline-phone")

    browser.get(f"{web_server.url}/models/regional")
    element(browser, "#pipeline-graph g.pg-step")
    scroll_width = browser.execute_script("return document.documentElement.scrollWidth")
    assert scroll_width <= width, f"the model page is {scroll_width}px wide on a {width}px screen"
    scroll_to(browser, "#pipeline-graph")
    screenshot(browser, "pipeline-model-phone")
