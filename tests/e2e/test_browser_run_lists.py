"""Lists of runs and readable charts in a real browser: the runs table and the compare pickers name
the parameters that tell runs apart, the runs page's filter form gives a filtered list its own
address, a series far smaller than the rest gets the chart's second y axis (and the reader may
take it back), and a long attempt error wraps instead of hiding behind a scrollbar."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml

from tests.conftest import Server
from tests.e2e.conftest import PHONE
from tests.e2e.test_browser import element, elements, shown, signed_in, submit_run, text_of, wait_for
from tests.e2e.test_browser_results import scroll_to

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

LOADS = {
    "name": "loads",
    "title": "Load and temperature",
    "command": ["python", "loads.py"],
    "params": {"type": "object", "properties": {"scale": {"type": "number", "default": 1}}},
    "outputs": [{"path": "load.csv"}],
}
# A day of a feeder's load (thousands of kW) beside the air temperature (tens of °C).
LOADS_SCRIPT = textwrap.dedent(
    """
    import json, math, os
    scale = json.load(open(os.environ["MODELRUNNER_PARAMS"]))["scale"]
    with open(os.path.join(os.environ["MODELRUNNER_OUTPUTS"], "load.csv"), "w") as out:
        out.write("hour,load_kw,temperature_c\\n")
        for hour in range(24):
            load = scale * (5000 + 1500 * math.sin(hour / 24 * 2 * math.pi))
            out.write(f"{hour},{load:.1f},{12 + 8 * math.sin((hour - 9) / 24 * 2 * math.pi):.1f}\\n")
    """
)
# An output it never writes, with a name far wider than any screen: the attempt's error names it.
LONG_NAME = "a_result_file_whose_name_goes_on_" * 7 + ".csv"  # within a file name's 255 bytes
MISSING = {
    "name": "missing",
    "command": ["python", "-c", "pass"],
    "outputs": [{"path": LONG_NAME}],
}

# What Chart.js holds for the chart in ``figure``: each line's axis and the range of both y axes.
AXES = """
const canvas = document.querySelector(arguments[0] + ' canvas');
const chart = canvas && window.Chart && window.Chart.getChart(canvas);
if (!chart) return null;
const range = id => chart.scales[id] && chart.options.scales[id].display !== false
  ? [chart.scales[id].min, chart.scales[id].max, chart.scales[id].position] : null;
return {
  lines: Object.fromEntries(chart.data.datasets.map(d => [d.label, d.yAxisID])),
  y: range('y'),
  y2: range('y2'),
  titles: [chart.options.scales.y.title.text, chart.options.scales.y2.title.text],
};
"""


@pytest.fixture
def workspace(workspace: Path) -> Path:
    for spec, files in ((LOADS, {"loads.py": LOADS_SCRIPT}), (MISSING, {})):
        folder = workspace / str(spec["name"])
        folder.mkdir()
        (folder / "model.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
        for name, text in files.items():
            (folder / name).write_text(text)
    return workspace


def api_submit(server: Server, model: str, params: dict[str, Any]) -> int:
    """A run submitted by the site admin through the API, once it has ended."""
    response = httpx.post(f"{server.url}/api/v1/models/{model}/runs", json={"params": params}, headers=server.headers)
    assert response.status_code in (200, 201), response.text
    run_id = int(response.json()["id"])
    for _ in range(300):
        status = httpx.get(f"{server.url}/api/v1/runs/{run_id}", headers=server.headers).json()["status"]
        if status in {"succeeded", "failed", "timed_out", "cancelled"}:
            return run_id
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not end")


def axes(driver: WebDriver, figure: str) -> dict[str, Any] | None:
    state: dict[str, Any] | None = driver.execute_script(AXES, figure)
    return state


def params_cells(driver: WebDriver) -> dict[str, str]:
    """Run link text (``#12``) -> its Parameters cell, as the runs table shows them."""
    rows = driver.execute_script(
        "return [...document.querySelectorAll('table#runs tbody tr')].filter(r => r.querySelector('td.params'))"
        ".map(r => [r.querySelector('a').innerText, r.querySelector('td.params').innerText.trim()])"
    )
    return {link: cell for link, cell in rows}


def test_lists_and_pickers_tell_runs_apart_and_filter(web_server: Server, browser: WebDriver) -> None:
    from selenium.webdriver.support.ui import Select

    by_admin = api_submit(web_server, "loads", {"scale": 2})
    signed_in(browser, web_server)
    browser.get(f"{web_server.url}/models/loads")
    by_alice = submit_run(browser, scale="0.5")
    wait_for(browser, lambda d: text_of(d, "#run-status") == "succeeded", 30, "alice's run")

    browser.get(f"{web_server.url}/models/loads")
    cells = wait_for(browser, lambda d: len(params_cells(d)) == 2 and params_cells(d), 10, "the runs table")
    assert cells == {f"#{by_alice}": "scale 0.5", f"#{by_admin}": "scale 2"}
    scroll_to(browser, "table#runs")
    shown(browser, "model-runs-with-params")

    element(browser, "a#compare-runs").click()
    options = [o.text for o in Select(element(browser, "#compare-a")).options[1:]]
    assert options[0].startswith(f"#{by_alice} · scale=0.5 · ") and options[1].startswith(f"#{by_admin} · scale=2 · ")
    shown(browser, "compare-picker")

    # The runs page: the filter form's choices become the address, and the list follows them.
    browser.get(f"{web_server.url}/models/loads")
    element(browser, "a#all-runs").click()
    wait_for(browser, lambda d: "/runs?model=loads" in d.current_url, 10, "the runs of loads")
    assert set(params_cells(browser)) == {f"#{by_alice}", f"#{by_admin}"}
    element(browser, "#filter-param-1").send_keys("scale=2")
    element(browser, "button#filter").click()
    wait_for(browser, lambda d: "param=" in d.current_url, 10, "the filtered list")
    query = parse_qs(urlsplit(browser.current_url).query)
    assert query["model"] == ["loads"] and query["param"] == ["scale=2"]
    assert list(params_cells(browser)) == [f"#{by_admin}"]
    assert Select(element(browser, "#filter-model")).first_selected_option.text == "loads"
    shown(browser, "runs-filtered-by-parameter")

    element(browser, "#filter-param-1").clear()
    element(browser, "#filter-submitter").send_keys("alice")
    Select(element(browser, "#filter-status")).select_by_value("succeeded")
    element(browser, "button#filter").click()
    wait_for(browser, lambda d: "submitter=alice" in d.current_url, 10, "the list of alice's runs")
    assert list(params_cells(browser)) == [f"#{by_alice}"]
    assert text_of(browser, "table#runs tbody td:nth-child(5)") == "alice"
    element(browser, "a#clear-filters").click()
    wait_for(browser, lambda d: urlsplit(d.current_url).query == "", 10, "the list without filters")
    assert {f"#{by_alice}", f"#{by_admin}"} <= set(params_cells(browser))

    # On a phone the form stacks and only the table scrolls sideways, never the page.
    browser.set_window_size(*PHONE)
    browser.get(f"{web_server.url}/runs?model=loads")
    element(browser, "table#runs")
    scroll_width = browser.execute_script("return document.documentElement.scrollWidth")
    assert scroll_width <= PHONE[0], f"the runs page is {scroll_width}px wide on a {PHONE[0]}px screen"
    shown(browser, "runs-phone")


def test_a_small_series_gets_the_second_axis_and_long_errors_wrap(web_server: Server, browser: WebDriver) -> None:
    run_id = api_submit(web_server, "loads", {"scale": 1})
    signed_in(browser, web_server)
    browser.get(f"{web_server.url}/runs/{run_id}/results/load.csv")
    state = wait_for(browser, lambda d: axes(d, "#chart-output"), 15, "the chart")
    # 20 °C beside 5,000 kW: the temperature is drawn against its own axis, on the right.
    assert state["lines"] == {"load_kw": "y", "temperature_c": "y2"}
    assert state["y"][1] > 5000 and state["y2"][1] < 100 and state["y2"][2] == "right"
    assert state["titles"] == ["load_kw", "temperature_c"]
    scroll_to(browser, "#chart-output")
    shown(browser, "chart-second-axis")

    # The reader takes it back: one axis, and the address keeps the choice.
    element(browser, "#chart-output input[name=right][value=temperature_c]").click()
    state = wait_for(browser, lambda d: (s := axes(d, "#chart-output")) and s["y2"] is None and s, 5, "one axis")
    assert state["lines"] == {"load_kw": "y", "temperature_c": "y"}
    assert "axes=chosen" in browser.current_url and "right=" not in browser.current_url
    browser.get(browser.current_url)
    state = wait_for(browser, lambda d: axes(d, "#chart-output"), 15, "the reopened chart")
    assert state["y2"] is None
    element(browser, "#chart-output input[name=right][value=temperature_c]").click()
    state = wait_for(browser, lambda d: (s := axes(d, "#chart-output")) and s["y2"] and s, 5, "two axes again")
    assert state["lines"]["temperature_c"] == "y2" and "right=temperature_c" in browser.current_url

    failed = api_submit(web_server, "missing", {})
    browser.get(f"{web_server.url}/runs/{failed}")
    cell = element(browser, "#attempts tbody tr td:last-child")
    assert LONG_NAME in cell.text
    assert "declared outputs were not written" in cell.text
    assert cell.value_of_css_property("white-space") == "pre-line"
    assert cell.value_of_css_property("overflow-wrap") == "anywhere"
    table = element(browser, "#attempts")
    widths = browser.execute_script("return [arguments[0].scrollWidth, arguments[0].clientWidth]", table)
    assert widths[0] <= widths[1], f"the attempts table scrolls sideways: {widths}"
    assert cell.size["height"] > 2 * 24, "the error does not wrap onto several lines"
    assert elements(browser, "#run-error")
    scroll_to(browser, "#attempts")
    shown(browser, "attempt-error-wraps")
