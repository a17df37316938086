"""The model's own news in a real browser: the run page shows the summary the model wrote
(rendered Markdown, with nothing it slipped in acting or fetching), and the Subscriptions page
shows how each subscription is narrowed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from modelrunner.store.database import Database
from tests.conftest import Server, wait_for_run
from tests.e2e.conftest import MODELLER
from tests.e2e.test_browser import element, elements, shown, signed_in, text_of
from tests.e2e.test_browser_results import scroll_to
from tests.identities import token_for
from tests.integration.runs_api import write_model
from tests.integration.test_model_news import LITERATURE, LITERATURE_PY, QUERIES, QUERIES_PY

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver


@pytest.fixture
def workspace(workspace: Path) -> Path:
    write_model(workspace, "literature", LITERATURE, {"literature.py": LITERATURE_PY})
    write_model(workspace, "queries", QUERIES, {"queries.py": QUERIES_PY})
    return workspace


def test_the_run_page_shows_the_models_summary_and_nothing_it_slipped_in_acts(
    web_server: Server, browser: WebDriver
) -> None:
    database = Database(web_server.env["MODELRUNNER_DATABASE_URL"])
    try:
        alice = {"Authorization": f"Bearer {token_for(database, MODELLER)}"}
    finally:
        database.dispose()
    with httpx.Client(base_url=web_server.url, headers=alice) as http:
        for body in (
            {"model": "queries", "step": "answer_queries"},
            {"model": "literature", "output": "results.csv", "params": {"query": "covid"}},
        ):
            response = http.post(
                "/api/v1/subscriptions", json={**body, "channel": "webhook", "url": "https://hooks.example.org/mr"}
            )
            assert response.status_code == 201, response.text
        response = http.post("/api/v1/models/literature/runs", json={"params": {"query": "covid", "n": 4}})
        assert response.status_code == 201, response.text
        run = wait_for_run(http.get, int(response.json()["id"]))
    assert run["status"] == "succeeded", run

    signed_in(browser, web_server)
    browser.get(f"{web_server.url}/runs/{run['id']}")
    element(browser, "#run-summary")
    assert text_of(browser, "#run-summary h1") == "4 new statements for covid"
    assert text_of(browser, "#run-summary li") == "first finding"
    link = element(browser, "#run-summary a[href='https://lit.example.org/q']")
    assert link.get_attribute("rel") == "noopener noreferrer nofollow"
    # What the model slipped in: no script, no image, no handler, no javascript: link in the page.
    assert not elements(browser, "#run-summary script, #run-summary img, #run-summary [onerror]")
    assert not elements(browser, "a[href^='javascript']")
    assert (
        browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)").count(
            "https://tracker.example/chart.png"
        )
        == 0
    )
    assert elements(browser, "button#signout"), "the viewer was signed out"
    scroll_to(browser, "#run-summary")
    shown(browser, "run-summary")

    browser.get(f"{web_server.url}/subscriptions")
    rows = elements(browser, "#subscriptions tbody tr")
    assert len(rows) == 2
    assert text_of(browser, "#subscriptions tbody tr:nth-child(1) .subscription-step") == "answer_queries"
    assert text_of(browser, "#subscriptions tbody tr:nth-child(2) .subscription-output") == "results.csv"
    assert text_of(browser, "#subscriptions tbody tr:nth-child(2) .subscription-params") == 'query="covid"'
    assert elements(browser, "nav a[href='/subscriptions']")
    shown(browser, "subscriptions")
