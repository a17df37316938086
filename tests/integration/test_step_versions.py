"""Step versions: a pipeline step is keyed by its own spec and the files it uses (its `files:`, the
model's `shared_files:`, the files its command names), so editing one step's script recomputes
that step (and what its changed outputs feed) and nothing else; a step without `files:` uses the
whole folder. Every execution appends to a ledger, so what was recomputed is counted.
`runs explain` names the part of the key that changed."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelrunner.platform import Platform
from modelrunner.settings import Settings
from tests.conftest import TESTS, wait_for_run
from tests.identities import add_user
from tests.integration.runs_api import submit

MODEL = "stepfiles"
PASSWORD = "correct horse battery staple"
EVERY_STEP = ["check", "estimate:north", "estimate:south", "publish", "summarise"]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    shutil.copytree(TESTS / "step_files_model", settings.workspace / MODEL)
    return settings


@pytest.fixture
def model(settings: Settings) -> Path:
    return settings.workspace / MODEL


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.txt"


def run_pipeline(client: TestClient, ledger: Path) -> tuple[dict[str, Any], list[str]]:
    """Submit the pipeline, wait for it; the run and the executions it caused, sorted."""
    before = len(executions(ledger))
    submitted = submit(client, MODEL, {"ledger": str(ledger)})
    run = wait_for_run(client.get, submitted["id"])
    assert run["status"] == "succeeded", run["error"]
    return run, sorted(executions(ledger)[before:])


def executions(ledger: Path) -> list[str]:
    return ledger.read_text().split() if ledger.exists() else []


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def explain(client: TestClient, run_id: int) -> dict[str, dict[str, Any]]:
    response = client.get(f"/api/v1/runs/{run_id}/explain")
    assert response.status_code == 200, response.text
    return {e["step"] + (f"[{e['item_key']}]" if e["item_key"] else ""): e for e in response.json()["explanations"]}


def signed_in(client: TestClient, platform: Platform) -> TestClient:
    """A browser signed in to the pages (they read the session cookie, not a bearer token)."""
    add_user(platform.database, "ada", groups=[], admin=True, password=PASSWORD)
    browser = TestClient(client.app, follow_redirects=False)
    token = re.search(r'name="csrf" value="([^"]+)"', browser.get("/signin").text)
    assert token is not None
    response = browser.post("/signin", data={"username": "ada", "password": PASSWORD, "csrf": token.group(1)})
    assert response.status_code == 303, response.text
    return browser


def test_editing_the_summary_recomputes_the_summary_alone(
    client: TestClient, platform: Platform, model: Path, ledger: Path
) -> None:
    first, ran = run_pipeline(client, ledger)
    assert ran == EVERY_STEP

    # A new comment in summarise.py: the summary is computed again (same result, so publish is
    # answered from the cache); the estimates are not; check has no `files:` and reruns.
    edit(model / "summarise.py", 'record("summarise")', 'record("summarise")  # the table of all regions')
    second, ran = run_pipeline(client, ledger)
    assert ran == ["check", "summarise"]
    assert second["outputs"] and {o["path"]: o["sha256"] for o in second["outputs"]} == {
        o["path"]: o["sha256"] for o in first["outputs"]
    }

    why = explain(client, second["id"])
    assert why["estimate[north]"]["outcome"] == "cache_hit" and why["publish"]["outcome"] == "cache_hit"
    summarise = why["summarise"]
    assert summarise["outcome"] == "computed"
    assert [(d["part"], d["name"]) for d in summarise["differences"]] == [("file", "summarise.py")]
    assert "file summarise.py changed" in summarise["reason"]
    # The run pages say it too.
    browser = signed_in(client, platform)
    page = browser.get(f"/runs/{second['id']}")
    assert page.status_code == 200, page.text
    assert "3 of 5 step runs answered from the cache" in page.text and "file summarise.py changed" in page.text
    page = browser.get(f"/runs/{summarise['run']}")
    assert "its key differs from run" in page.text and "file summarise.py changed" in page.text
    # check has no `files:`: its key holds the whole folder's version, told file by file.
    assert [(d["part"], d["name"]) for d in why["check"]["differences"]] == [
        ("version", "(the whole model folder)"),
        ("file", "summarise.py"),
    ]

    # The summary's layout (a file only summarise uses) changes its output: publish follows.
    edit(model / "summary_format.txt", "regions, total", "regions; total")
    third, ran = run_pipeline(client, ledger)
    assert ran == ["check", "publish", "summarise"]
    publish = explain(client, third["id"])["publish"]
    assert [(d["part"], d["name"]) for d in publish["differences"]] == [("upstream output", "summarise/summary.txt")]


def test_editing_a_shared_file_recomputes_every_step_that_uses_it(
    client: TestClient, model: Path, ledger: Path
) -> None:
    first, _ = run_pipeline(client, ledger)
    edit(model / "lib" / "common.py", "FACTOR = 1", "FACTOR = 1  # no scaling")
    second, ran = run_pipeline(client, ledger)
    assert ran == EVERY_STEP
    why = explain(client, second["id"])
    assert [(d["part"], d["name"]) for d in why["estimate[south]"]["differences"]] == [("file", "lib/common.py")]

    # Back as it was: every step's key is the first run's again, so nothing is computed.
    edit(model / "lib" / "common.py", "FACTOR = 1  # no scaling", "FACTOR = 1")
    third, ran = run_pipeline(client, ledger)
    assert ran == []
    [whole] = client.get(f"/api/v1/runs/{third['id']}/explain").json()["explanations"]
    assert (whole["outcome"], whole["source_run"]) == ("cache_hit", first["id"])


def test_rerun_from_the_summary_after_editing_it_reuses_the_estimates(
    client: TestClient, model: Path, ledger: Path
) -> None:
    first, _ = run_pipeline(client, ledger)
    edit(model / "summarise.py", 'record("summarise")', 'record("summarise")  # edited')
    before = len(executions(ledger))
    response = client.post(f"/api/v1/runs/{first['id']}/rerun", json={"from": "summarise"})
    assert response.status_code == 201, response.text
    rerun = wait_for_run(client.get, response.json()["id"])
    assert rerun["status"] == "succeeded", rerun["error"]
    assert sorted(executions(ledger)[before:]) == ["check", "publish", "summarise"]
    why = explain(client, rerun["id"])
    assert why["summarise"]["outcome"] == "recompute_asked" and why["publish"]["outcome"] == "recompute_asked"


def test_a_step_spec_change_recomputes_that_step_only(client: TestClient, model: Path, ledger: Path) -> None:
    run_pipeline(client, ledger)
    # Resources change no result: nothing but check (the whole folder changed) runs again.
    edit(
        model / "model.yaml",
        "    files: [summary_format.txt]\n",
        "    files: [summary_format.txt]\n    resources: {cpu: 1}\n",
    )
    _, ran = run_pipeline(client, ledger)
    assert ran == ["check"]
    edit(model / "model.yaml", "command: [python, summarise.py]", "command: [python, -B, summarise.py]")
    second, ran = run_pipeline(client, ledger)
    assert ran == ["check", "summarise"]
    assert [d["part"] for d in explain(client, second["id"])["summarise"]["differences"]] == ["step spec"]


def test_a_pattern_that_matches_no_file_is_refused_at_submit(client: TestClient, model: Path) -> None:
    edit(model / "model.yaml", "files: [summary_format.txt]", "files: [summary_fromat.txt]")
    response = client.post(f"/api/v1/models/{MODEL}/runs", json={"params": {}})
    assert response.status_code == 422, response.text
    assert "steps.summarise.files: 'summary_fromat.txt' matches no file of the model" in response.text
