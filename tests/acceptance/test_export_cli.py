"""``modelrunner export`` as a team moving from a cron VM meets it: the real CLI as a subprocess
against a real ``modelrunner serve``, writing status and runtime CSV files (or showing tables)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import httpx

from modelrunner.artifacts.store import ArtifactStore
from modelrunner.engine.submit import Submitter
from modelrunner.settings import Settings
from modelrunner.spec.workspace import Workspace
from modelrunner.store.database import Database
from tests.acceptance.test_cli import cli, ok, wait_until
from tests.conftest import FINAL, Server


def run_to_the_end(server: Server, model: str, params: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        headers=server.headers, url=f"{server.url}/api/v1/models/{model}/runs", json={"params": params}
    )
    assert response.status_code == 201, response.text
    return wait_until(server, response.json()["id"], FINAL)


def scheduled_run(server: Server, settings: Settings, model: str, params: dict[str, Any], origin: str) -> int:
    """A run submitted into the server's store as a schedule does; its id once it has ended."""
    database = Database(settings.resolved_database_url)
    try:
        submitter = Submitter(database, Workspace(settings.workspace), ArtifactStore(settings.resolved_artifacts_url))
        run_id = submitter.submit(model, params, origin=origin).run.id
    finally:
        database.dispose()
    wait_until(server, run_id, FINAL)
    return run_id


def rows_of(text: str) -> dict[tuple[str, str, str], dict[str, str]]:
    return {(r["model"], r["schedule"], r["item"]): r for r in csv.DictReader(io.StringIO(text))}


def test_status_and_runtimes_as_csv_files_tables_and_json(server: Server, settings: Settings, tmp_path: Path) -> None:
    env = server.env
    noop = run_to_the_end(server, "noop", {"n": 1})
    failing = run_to_the_end(server, "failing", {})
    daily = scheduled_run(server, settings, "noop", {"n": 2}, "schedule:noop/daily#0")

    status = rows_of(ok("export", "status", "--csv", env=env))
    assert set(status) == {("failing", "", ""), ("noop", "", ""), ("noop", "noop/daily", "0")}
    assert status["noop", "", ""]["last_run_id"] == str(noop["id"])
    assert status["noop", "noop/daily", "0"]["last_success_run_id"] == str(daily)
    assert (status["failing", "", ""]["last_status"], status["failing", "", ""]["failed"]) == ("failed", "1")

    # -o writes the file (CSV) and nothing to stdout; the environment sets any flag.
    target = tmp_path / "runtimes.csv"
    assert ok("export", "runtimes", "-o", str(target), env=env) == ""
    runtimes = rows_of(target.read_text())
    assert runtimes["noop", "", ""]["current_run_id"] == str(noop["id"])
    assert runtimes["failing", "", ""]["runs"] == "0"
    only_failing = ok("export", "status", env={**env, "MODELRUNNER_CSV": "1", "MODELRUNNER_MODEL": "failing"})
    assert list(rows_of(only_failing)) == [("failing", "", "")]
    scheduled = json.loads(ok("export", "status", "--schedule", "daily", "--json", env=env))
    assert [(r["schedule"], r["item"], r["last_run_id"]) for r in scheduled] == [("noop/daily", 0, daily)]

    table = cli("export", "status", env=env)
    assert table.returncode == 0
    for shown in ("on demand", "noop/daily #0", "failing", "succeeded"):
        assert shown in table.stdout
    assert f"failing on demand: run {failing['id']} failed: " in table.stderr
    assert "noop/daily #0" in ok("export", "runtimes", env=env)

    unknown = cli("export", "runtimes", "--model", "nope", "--csv", env=env)
    assert (unknown.returncode, unknown.stdout, unknown.stderr) == (1, "", "error: unknown model 'nope'\n")
    both = cli("export", "status", "--csv", "--json", env=env)
    assert both.returncode == 2 and "choose one" in both.stderr
