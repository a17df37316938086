"""An HTML report a model wrote, in a real browser: the run page shows it inline in a sandboxed
frame, and nothing in it runs with this site's origin. The report's script would, if it ran,
rewrite itself, rewrite the run page, navigate the page to sign-out, call the API and read the
cookies; none of that happens, in the frame or when the report's URL is opened directly. A failed
run's report is shown under its attempt, labelled as partial."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.conftest import Server, wait_for_run
from tests.e2e.test_browser import element, elements, shown, signed_in, text_of, wait_for
from tests.e2e.test_browser_results import scroll_to
from tests.integration.runs_api import write_model

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

REPORT = """\
<!doctype html>
<html><head><title>Rt report</title><style>h1 { color: rgb(0, 128, 0); }</style></head>
<body>
<h1 id="headline">Rt estimate</h1>
<p id="status">nothing ran</p>
<script>
document.getElementById('status').textContent = 'the script ran';
try { parent.document.body.innerHTML = '<h1 id="hacked">HACKED</h1>'; } catch (e) {}
try { document.title = 'cookies: ' + document.cookie; } catch (e) {}
fetch('/api/v1/runs').then(function (r) { document.getElementById('status').textContent = 'fetched ' + r.status; });
setTimeout(function () { top.location = '/signout'; }, 200);
</script>
</body></html>
"""
REPORTER = """\
title: Writes an HTML report (with a script in it)
command: ["python", "report.py"]
params:
  type: object
  properties:
    fail: {type: boolean, default: false}
"""
REPORT_PY = f"""\
import json, os, sys
from pathlib import Path
(Path(os.environ["MODELRUNNER_OUTPUTS"]) / "report.html").write_text({REPORT!r})
with open(os.environ["MODELRUNNER_PARAMS"]) as handle:
    sys.exit(1 if json.load(handle)["fail"] else 0)
"""


@pytest.fixture
def workspace(workspace: Path) -> Path:
    write_model(workspace, "reporter", REPORTER, {"report.py": REPORT_PY})
    return workspace


def finished(server: Server, fail: bool) -> int:
    with httpx.Client(base_url=server.url, headers=server.headers) as http:
        response = http.post("/api/v1/models/reporter/runs", json={"params": {"fail": fail}})
        assert response.status_code == 201, response.text
        run = wait_for_run(http.get, int(response.json()["id"]))
    assert run["status"] == ("failed" if fail else "succeeded"), run
    return int(run["id"])


def frame_shows_the_report_and_nothing_ran(driver: WebDriver, frame_css: str) -> None:
    frame = element(driver, frame_css)
    assert frame.get_attribute("sandbox") == ""  # no allow-scripts, no allow-same-origin
    # The frame's document is of an opaque origin: the page (this site) cannot reach into it.
    assert driver.execute_script("return arguments[0].contentDocument === null", frame)
    driver.switch_to.frame(frame)
    try:
        assert text_of(driver, "#headline") == "Rt estimate"  # the report is shown
        assert element(driver, "#headline").value_of_css_property("color") in ("rgb(0, 128, 0)", "rgba(0, 128, 0, 1)")
        assert text_of(driver, "#status") == "nothing ran"
    finally:
        driver.switch_to.default_content()


def test_a_report_is_shown_inline_and_its_script_cannot_act_for_the_site(
    web_server: Server, browser: WebDriver
) -> None:
    run_id = finished(web_server, fail=False)
    signed_in(browser, web_server)
    browser.get(f"{web_server.url}/runs/{run_id}")
    browser.execute_script("window.e2eLoaded = true")
    frame_shows_the_report_and_nothing_ran(browser, "section.report iframe.report-frame")
    time.sleep(1)  # the script's navigation to sign-out would have happened by now
    assert browser.current_url == f"{web_server.url}/runs/{run_id}"
    assert browser.execute_script("return window.e2eLoaded === true"), "the run page was navigated away"
    assert not elements(browser, "#hacked") and elements(browser, "#attempts")
    assert elements(browser, "button#signout"), "the viewer was signed out"
    assert browser.title.startswith("Run ")
    scroll_to(browser, "section.report")
    shown(browser, "run-html-report")

    # Opened directly, the report's own CSP sandboxes it: an opaque origin, no cookies, no script.
    browser.get(f"{web_server.url}/runs/{run_id}/view/report.html")
    wait_for(browser, lambda d: text_of(d, "#headline") == "Rt estimate", 10, "the report opened directly")
    time.sleep(0.5)
    assert text_of(browser, "#status") == "nothing ran"
    assert browser.title == "Rt report"
    assert browser.execute_script("return window.origin") == "null"
    cookies = browser.execute_script("try { return document.cookie; } catch (e) { return 'refused: ' + e.name; }")
    assert cookies == "refused: SecurityError"
    assert browser.current_url == f"{web_server.url}/runs/{run_id}/view/report.html"


def test_a_failed_runs_report_is_shown_under_its_attempt_as_partial(web_server: Server, browser: WebDriver) -> None:
    run_id = finished(web_server, fail=True)
    signed_in(browser, web_server)
    browser.get(f"{web_server.url}/runs/{run_id}")
    section = element(browser, "#partial-outputs-1")
    assert "Attempt 1 (failed): partial outputs" in section.text
    assert "partial" in text_of(browser, "#partial-outputs-1 .badge-partial")
    assert "not the run's result" in text_of(browser, ".partial-note")
    assert "No outputs." in text_of(browser, "#outputs")
    frame_shows_the_report_and_nothing_ran(browser, "#partial-outputs-1 iframe.report-frame")
    assert not elements(browser, "#hacked")
    scroll_to(browser, "#partial-outputs-1")
    shown(browser, "run-partial-html-report")
