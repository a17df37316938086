"""Data in, in a real browser (headless Chromium): a file parameter uploaded through the run form,
and files put into a managed dataset through its page, with its write rules, versions and diff."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from modelrunner.settings import Settings
from tests.conftest import empty_database, wait_for_run
from tests.e2e.conftest import screenshot
from tests.e2e.test_browser import element, sign_in, wait_for
from tests.identities import add_user
from tests.integration.runs_api import write_model
from tests.integration.served import Served

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

PASSWORD = "correct horse battery"
WORKSPACE = """\
name: data-in
datasets:
  paris:
    source: managed
    write:
      "base/**": [planners]
      "**": [analysts]
access:
  groups:
    planners: [{models: "*", allow: run}]
    analysts: [{models: "*", allow: run}]
"""
READER = (
    "import json, os, pathlib\n"
    "params = json.loads(pathlib.Path(os.environ['MODELRUNNER_PARAMS']).read_text())\n"
    "text = (pathlib.Path(os.environ['MODELRUNNER_INPUTS']) / params['network']).read_text()\n"
    "pathlib.Path(os.environ['MODELRUNNER_OUTPUTS'], 'seen.json').write_text(json.dumps({'text': text}))\n"
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("browser-data")
    workspace = root / "workspace"
    workspace.mkdir()
    (workspace / "modelrunner.yaml").write_text(WORKSPACE, encoding="utf-8")
    write_model(
        workspace,
        "transport",
        "command: [python, read.py]\n"
        "params:\n  type: object\n  properties:\n    network: {type: string, format: file}\n"
        "    scenario: {type: string, default: base}\n"
        "  required: [network]\n"
        "inputs:\n  scenario: {dataset: paris, path: params.scenario}\n"
        "outputs:\n  - path: seen.json\n",
        {"read.py": READER},
    )
    with empty_database(root / "state") as url:
        settings = Settings(workspace=workspace, data_dir=root / "state", database_url=url, poll_seconds=0.2)
        started = Served(settings)
        add_user(started.platform.database, "pia", groups=["planners", "analysts"], password=PASSWORD)
        add_user(started.platform.database, "ali", groups=["analysts"], password=PASSWORD)
        try:
            yield started
        finally:
            started.stop()


def test_put_files_into_a_managed_dataset_and_upload_a_file_parameter(
    served: Served, browser: WebDriver, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    base = tmp_path / "links.geojson"
    base.write_text('{"links": "base"}')
    sign_in(browser, served, "pia", PASSWORD)  # type: ignore[arg-type]
    element(browser, "button#signout")
    browser.get(f"{served.url}/datasets/paris")
    form = element(browser, "form#put-files")
    assert "at most" in form.text
    form.find_element(By.CSS_SELECTOR, "#put-file").send_keys(str(base))
    form.find_element(By.CSS_SELECTOR, "#put-folder").send_keys("base")
    form.find_element(By.CSS_SELECTOR, "#put-message").send_keys("the base network")
    form.find_element(By.CSS_SELECTOR, "#put-submit").click()
    wait_for(browser, lambda _: "pia" in element(browser, "table#versions").text, 10, "the new version is listed")
    assert "the base network" in element(browser, "table#versions").text
    screenshot(browser, "managed-dataset-after-put")

    # The run form: the scenario is picked among the dataset's folders, the network uploaded.
    browser.get(f"{served.url}/models/transport")
    run_form = element(browser, "form#run-form")
    options = run_form.find_elements(By.CSS_SELECTOR, "#param-scenario option")
    assert [o.text for o in options] == ["(default)", "base"]
    run_form.find_element(By.CSS_SELECTOR, "#param-network").send_keys(str(base))
    assert "At most" in run_form.text
    run_form.find_element(By.CSS_SELECTOR, "#submit").click()
    wait_for(browser, lambda _: "/runs/" in browser.current_url, 15, "the run page opens")
    run_id = int(browser.current_url.rstrip("/").rsplit("/", 1)[1])
    run = wait_for_run(served.http.get, run_id)
    assert run["status"] == "succeeded", run
    assert json.loads(served.http.get(f"/api/v1/runs/{run_id}/outputs/seen.json").text) == {"text": base.read_text()}
    screenshot(browser, "file-parameter-run")

    # Another user, outside planners, is refused base/ and told which rule keeps them out.
    browser.delete_all_cookies()
    sign_in(browser, served, "ali", PASSWORD)  # type: ignore[arg-type]
    element(browser, "button#signout")
    browser.get(f"{served.url}/datasets/paris")
    form = element(browser, "form#put-files")
    form.find_element(By.CSS_SELECTOR, "#put-file").send_keys(str(base))
    form.find_element(By.CSS_SELECTOR, "#put-folder").send_keys("base")
    form.find_element(By.CSS_SELECTOR, "#put-submit").click()
    wait_for(browser, lambda _: "base/**" in browser.page_source, 10, "the refusal names the rule")
    screenshot(browser, "managed-dataset-refused")
    # ... and may write their own scenario, then see what changed.
    browser.get(f"{served.url}/datasets/paris")
    form = element(browser, "form#put-files")
    form.find_element(By.CSS_SELECTOR, "#put-file").send_keys(str(base))
    form.find_element(By.CSS_SELECTOR, "#put-folder").send_keys("x")
    form.find_element(By.CSS_SELECTOR, "#put-message").send_keys("scenario x")
    form.find_element(By.CSS_SELECTOR, "#put-submit").click()
    wait_for(browser, lambda _: "scenario x" in element(browser, "table#versions").text, 10, "the second version")
    element(browser, "form#compare-versions button").click()
    wait_for(browser, lambda _: "x/links.geojson" in element(browser, "#diff-added").text, 10, "the diff")
    screenshot(browser, "managed-dataset-diff")
    # A whole folder, chosen as a folder: it goes in with its own name.
    folder = tmp_path / "y"
    (folder / "net").mkdir(parents=True)
    (folder / "net" / "links.geojson").write_text('{"links": "y"}')
    (folder / "od.csv").write_text("a,b,1\n")
    browser.get(f"{served.url}/datasets/paris")
    form = element(browser, "form#put-files")
    form.find_element(By.CSS_SELECTOR, "#put-tree").send_keys(str(folder))
    form.find_element(By.CSS_SELECTOR, "#put-message").send_keys("scenario y, a folder")
    form.find_element(By.CSS_SELECTOR, "#put-submit").click()
    wait_for(browser, lambda _: "scenario y, a folder" in element(browser, "table#versions").text, 10, "folder")
    newest = served.http.get("/api/v1/datasets/paris/versions").json()[0]["version"]
    files = {f["path"] for f in served.http.get(f"/api/v1/datasets/paris/versions/{newest}").json()["files"]}
    assert {"y/net/links.geojson", "y/od.csv", "x/links.geojson", "base/links.geojson"} == files
