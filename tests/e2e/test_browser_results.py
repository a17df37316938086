"""Results in a real browser: the quickstart's SEIR projection drawn on its run page as soon as
the run ends, the output page's chart redrawn when the x column and series change, JSON
pretty-printed, and two runs compared with their lines overlaid. Each page is saved as a screenshot."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import REPO, Server
from tests.e2e.conftest import PHONE
from tests.e2e.test_browser import element, open_model, shown, signed_in, submit_run, text_of, wait_for

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

SERIES = ["susceptible", "exposed", "infectious", "recovered", "new_infections"]

# What Chart.js holds for the chart in ``figure`` (a CSS selector): its x scale and its lines.
CHART_STATE = """
const canvas = document.querySelector(arguments[0] + ' canvas');
const chart = canvas && window.Chart && window.Chart.getChart(canvas);
if (!chart) return null;
return {
  x: chart.options.scales.x.type,
  title: chart.options.scales.x.title.text,
  lines: chart.data.datasets.map(d => [d.label, d.data.length, Math.max(...d.data.map(p => p.y))]),
  height: canvas.getBoundingClientRect().height,
};
"""


@pytest.fixture
def workspace(workspace: Path) -> Path:
    shutil.copytree(REPO / "examples" / "quickstart" / "seir", workspace / "seir")
    return workspace


def chart_state(driver: WebDriver, figure: str) -> dict[str, Any] | None:
    state: dict[str, Any] | None = driver.execute_script(CHART_STATE, figure)
    return state


def scroll_to(driver: WebDriver, css: str) -> None:
    """Bring ``css`` to the top of the window, so that the screenshot shows it."""
    driver.execute_script("document.querySelector(arguments[0]).scrollIntoView()", css)


def run_seir(driver: WebDriver, server: Server, **params: str) -> int:
    open_model(driver, server, "seir")
    return submit_run(driver, days="90", **params)


def test_the_projection_is_drawn_and_redrawn_as_the_reader_chooses(web_server: Server, browser: WebDriver) -> None:
    signed_in(browser, web_server)
    run_id = run_seir(browser, web_server, r0="3")
    # The run page draws the projection once the run ends, without a reload.
    browser.execute_script("window.e2eLoaded = true")
    wait_for(browser, lambda d: chart_state(d, "#chart-run"), 30, "the run page's chart")
    assert browser.execute_script("return window.e2eLoaded === true"), "the run page reloaded"
    state = chart_state(browser, "#chart-run")
    assert state and state["x"] == "linear" and state["title"] == "day"
    assert [label for label, _, _ in state["lines"]] == SERIES
    assert all(points == 91 for _, points, _ in state["lines"])  # days 0..90
    assert state["height"] > 100
    scroll_to(browser, "#chart-run")
    shown(browser, "run-seir-chart")

    element(browser, "a.view-output[href$='projection.csv']").click()
    wait_for(browser, lambda d: chart_state(d, "#chart-output"), 15, "the output page's chart")
    element(browser, "#chart-output input[name=series][value=susceptible]").click()  # off
    element(browser, "#chart-output input[name=series][value=exposed]").click()  # off
    state = chart_state(browser, "#chart-output")
    assert state and [label for label, _, _ in state["lines"]] == ["infectious", "recovered", "new_infections"]
    from selenium.webdriver.support.ui import Select

    Select(element(browser, "#x-output")).select_by_visible_text("recovered")
    state = wait_for(browser, lambda d: (s := chart_state(d, "#chart-output")) and s["title"] == "recovered" and s, 5)
    assert [label for label, _, _ in state["lines"]] == ["infectious", "new_infections"]
    # The address follows the choice: reopening it draws the same chart.
    assert "x=recovered" in browser.current_url and "series=infectious" in browser.current_url
    browser.get(browser.current_url)
    state = wait_for(browser, lambda d: chart_state(d, "#chart-output"), 15, "the reopened chart")
    assert state["title"] == "recovered" and len(state["lines"]) == 2
    assert text_of(browser, "table#csv caption") == "91 rows"
    scroll_to(browser, "#chart-output")
    shown(browser, "output-projection-csv")

    browser.get(f"{web_server.url}/runs/{run_id}/results/summary.json")
    document = text_of(browser, "pre#json")
    assert document.startswith("{\n") and '\n  "peak_day": ' in document
    shown(browser, "output-summary-json")


def test_two_runs_compared_with_their_lines_overlaid(web_server: Server, browser: WebDriver) -> None:
    from selenium.webdriver.support.ui import Select

    signed_in(browser, web_server)
    slow = run_seir(browser, web_server, r0="1.5")
    wait_for(browser, lambda d: text_of(d, "#run-status") == "succeeded", 30, "the first run")
    fast = run_seir(browser, web_server, r0="3")
    wait_for(browser, lambda d: text_of(d, "#run-status") == "succeeded", 30, "the second run")

    element(browser, "a#compare-link").click()
    Select(element(browser, "#compare-b")).select_by_value(str(slow))
    assert Select(element(browser, "#compare-a")).first_selected_option.get_attribute("value") == str(fast)
    element(browser, "button#compare").click()
    state = wait_for(browser, lambda d: chart_state(d, "#chart-compare-0"), 15, "the overlaid chart")
    labels = [label for label, _, _ in state["lines"]]
    assert labels == [f"run {fast}: {s}" for s in SERIES] + [f"run {slow}: {s}" for s in SERIES]
    peaks = {label: peak for label, _, peak in state["lines"]}
    assert peaks[f"run {fast}: infectious"] > peaks[f"run {slow}: infectious"]
    assert "r0" in text_of(browser, "#compare-params tr.differs")
    assert "days" not in text_of(browser, "#compare-params tr.differs")
    shown(browser, "compare")
    scroll_to(browser, "#chart-compare-0")
    shown(browser, "compare-chart")

    width, height = PHONE
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": True}
    )
    browser.get(browser.current_url)
    wait_for(browser, lambda d: chart_state(d, "#chart-compare-0"), 15, "the chart on a phone")
    scroll_width = browser.execute_script("return document.documentElement.scrollWidth")
    assert scroll_width <= width, f"the compare page is {scroll_width}px wide on a {width}px screen"
    scroll_to(browser, "#chart-compare-0")
    shown(browser, "compare-phone")
