"""``modelrunner runs outputs --partial`` / ``--attempt N``: what a failed attempt wrote, listed and
downloaded with the real CLI from a real server, apart from the run's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.acceptance.test_cli import cli, ok, wait_until
from tests.conftest import Server
from tests.integration.runs_api import write_model
from tests.integration.test_partial_outputs import NOTES, REPORT, SCRIBBLE, SCRIBBLER, SECOND, SECOND_TRY


@pytest.fixture
def workspace(workspace: Path) -> Path:
    write_model(workspace, "scribbler", SCRIBBLER, {"scribble.py": SCRIBBLE})
    write_model(workspace, "second_try", SECOND_TRY, {"second.py": SECOND})
    return workspace


def _finished(server: Server, model: str) -> dict[str, object]:
    with httpx.Client(base_url=server.url, headers=server.headers) as http:
        response = http.post(f"/api/v1/models/{model}/runs", json={"params": {}})
        assert response.status_code == 201, response.text
    return wait_until(server, int(response.json()["id"]), {"succeeded", "failed"}, timeout=60)


def test_partial_outputs_are_listed_and_downloaded_apart_from_the_result(server: Server, tmp_path: Path) -> None:
    failed = _finished(server, "scribbler")
    assert failed["status"] == "failed"
    run_id = str(failed["id"])

    assert "has no outputs" in cli("runs", "outputs", run_id, env=server.env).stderr
    listed = ok("runs", "outputs", run_id, "--partial", env=server.env)
    assert "partial outputs of attempt 1 (not the result)" in listed
    assert "notes.bin" in listed and "report/index.html" in listed and "hostname" not in listed

    rows = json.loads(ok("runs", "outputs", run_id, "--partial", "--json", env=server.env))
    assert [(r["attempt"], r["path"]) for r in rows] == [(1, "notes.bin"), (1, "report/index.html")]

    saved = ok("runs", "outputs", run_id, "--attempt", "1", "--download", str(tmp_path / "got"), env=server.env)
    assert "saved 2 files" in saved and "sha256 verified" in saved
    assert (tmp_path / "got" / "attempt-1" / "notes.bin").read_bytes() == NOTES
    assert (tmp_path / "got" / "attempt-1" / "report" / "index.html").read_text() == REPORT

    missing = cli("runs", "outputs", run_id, "--attempt", "2", env=server.env)
    assert missing.returncode != 0
    assert f"run {run_id} has no attempt 2" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_a_retried_run_shows_its_result_and_its_first_attempts_draft(server: Server) -> None:
    run = _finished(server, "second_try")
    assert run["status"] == "succeeded"
    run_id = str(run["id"])
    result = ok("runs", "outputs", run_id, env=server.env)
    assert "result.txt" in result and "draft.txt" not in result
    partial = ok("runs", "outputs", run_id, "--partial", env=server.env)
    assert "partial outputs of attempt 1" in partial and "draft.txt" in partial
    assert "attempt 2" not in partial and "result.txt" not in partial


def test_run_local_keeps_a_failed_models_files_as_partial_outputs(server_env: dict[str, str], tmp_path: Path) -> None:
    folder = tmp_path / "local-run"
    failed = cli("run", "scribbler", "--local", "--output-dir", str(folder), env=server_env)
    assert failed.returncode == 1
    assert "partial outputs (not a result)" in failed.stdout and "partial outputs in" in failed.stdout
    assert (folder / "notes.bin").read_bytes() == NOTES
    assert not (folder / "hostname").exists()
