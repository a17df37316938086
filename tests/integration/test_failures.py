"""Runs that go wrong: failed attempts, retries, missing outputs, missing programs, timeouts."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from modelrunner.execution import checkpoints
from modelrunner.settings import Settings
from tests.conftest import wait_for_run
from tests.integration.runs_api import (
    events,
    logs,
    new_run_row,
    process_gone,
    read_pid,
    status_path,
    submit,
    wait_until,
    write_model,
)


def test_failing_model_is_retried_then_fails_with_its_error(client: TestClient) -> None:
    run = wait_for_run(client.get, submit(client, "failing")["id"])

    assert run["status"] == "failed"
    assert "exit status 3" in run["error"]
    assert [(a["number"], a["status"], a["exit_code"]) for a in run["attempts"]] == [(1, "failed", 3), (2, "failed", 3)]
    assert all("exit status 3" in a["error"] for a in run["attempts"])
    assert run["outputs"] == []
    assert run["finished_at"] is not None
    assert status_path(client, run["id"]) == [
        "queued",
        "starting",
        "running",
        "queued",
        "starting",
        "running",
        "failed",
    ]
    retry = next(
        e["data"] for e in events(client, run["id"]) if e["type"] == "run.status" and e["data"]["from"] == "running"
    )
    assert retry["to"] == "queued"
    assert "retry 1 of 1" in retry["reason"]
    text = logs(client, run["id"])
    assert text.count("about to fail") == 2
    assert "--- attempt 2 ---" in text


def test_flaky_model_succeeds_on_its_second_attempt_using_its_checkpoint(client: TestClient) -> None:
    run = wait_for_run(client.get, submit(client, "flaky", {"key": "a"})["id"])

    assert run["status"] == "succeeded", run["error"]
    assert run["error"] is None
    assert [(a["number"], a["status"]) for a in run["attempts"]] == [(1, "failed"), (2, "succeeded")]
    assert [o["path"] for o in run["outputs"]] == ["result.txt"]
    assert client.get(run["outputs"][0]["url"]).text == "second attempt succeeded\n"
    assert "first attempt fails on purpose" in logs(client, run["id"])


def test_checkpoints_belong_to_one_run(client: TestClient) -> None:
    first = wait_for_run(client.get, submit(client, "flaky", {"key": "b"})["id"])
    second = wait_for_run(client.get, submit(client, "flaky", {"key": "c"})["id"])

    # A second run starts without the first run's checkpoint, so it fails once too.
    assert [a["status"] for a in first["attempts"]] == ["failed", "succeeded"]
    assert [a["status"] for a in second["attempts"]] == ["failed", "succeeded"]


# Counts its attempts in its checkpoint, and fails every time.
COUNT_AND_FAIL = """import sys
from modelrunner import job

count = job.checkpoint() / "attempts"
seen = int(count.read_text()) if count.exists() else 0
print(f"earlier attempts: {seen}")
count.write_text(str(seen + 1))
sys.exit(1)
"""


def test_the_checkpoint_of_a_run_that_fails_for_good_is_removed(
    client: TestClient, workspace: Path, settings: Settings
) -> None:
    write_model(
        workspace, "count_and_fail", "command: [python, fail.py]\nretries: {failed: 1}\n", {"fail.py": COUNT_AND_FAIL}
    )
    run = wait_for_run(client.get, submit(client, "count_and_fail")["id"])

    assert [a["status"] for a in run["attempts"]] == ["failed", "failed"]
    assert "earlier attempts: 1" in logs(client, run["id"])  # the retry started from the checkpoint
    folder = checkpoints.local_folder(settings.state_dir, run["id"])
    wait_until(lambda: not folder.exists(), 20, "the ended run's checkpoint to be removed")


def test_missing_declared_output_fails_naming_it(client: TestClient) -> None:
    run = wait_for_run(client.get, submit(client, "no_output")["id"])

    assert run["status"] == "failed"
    assert "missing.csv" in run["error"]
    assert [(a["status"], a["exit_code"]) for a in run["attempts"]] == [("failed", 0)]  # no retries declared
    assert run["outputs"] == []
    assert "wrote nothing" in logs(client, run["id"])


def test_a_command_that_does_not_exist_fails_with_a_clear_error(client: TestClient, workspace: Path) -> None:
    write_model(workspace, "missing_program", 'command: ["modelrunner-no-such-program", "--fit"]\n')

    run = wait_for_run(client.get, submit(client, "missing_program")["id"])

    assert run["status"] == "failed"
    assert "modelrunner-no-such-program" in run["error"]
    assert "No such file" in run["error"]
    assert "Traceback" not in run["error"]
    assert len(run["attempts"]) == 1
    assert "modelrunner-no-such-program" in logs(client, run["id"])


def test_a_model_killed_by_a_signal_names_the_signal(client: TestClient, workspace: Path) -> None:
    write_model(workspace, "crasher", 'command: ["python", "-c", "import os, signal; os.kill(os.getpid(), 9)"]\n')

    run = wait_for_run(client.get, submit(client, "crasher")["id"])

    assert run["status"] == "failed"
    assert "signal 9" in run["error"]


def test_timeout_stops_the_model_and_ends_the_run_timed_out(
    client: TestClient, workspace: Path, tmp_path: Path
) -> None:
    write_model(
        workspace,
        "stuck",
        'command: ["python", "stuck.py"]\nparams: {type: object, properties: {pidfile: {type: string}}}\n'
        "resources: {timeout: 1}\nretries: 2\n",
        {
            "stuck.py": (
                "import os, time\n"
                "from modelrunner import job\n"
                "open(job.params()['pidfile'], 'w').write(str(os.getpid()))\n"
                "time.sleep(30)\n"
            )
        },
    )
    pidfile = tmp_path / "stuck.pid"
    started = time.monotonic()

    run = wait_for_run(client.get, submit(client, "stuck", {"pidfile": str(pidfile)})["id"], timeout=10)
    elapsed = time.monotonic() - started

    assert run["status"] == "timed_out"
    assert "timed out" in run["error"]
    assert elapsed < 6
    assert [a["status"] for a in run["attempts"]] == ["timed_out"]  # a timeout is not retried
    assert status_path(client, run["id"])[-2:] == ["running", "timed_out"]
    pid = read_pid(pidfile)
    assert pid is not None
    wait_until(lambda: process_gone(pid), 3, f"timed-out model process {pid} gone")


def test_a_timed_out_model_that_ignores_sigterm_is_killed(client: TestClient, workspace: Path, tmp_path: Path) -> None:
    write_model(
        workspace,
        "stubborn",
        'command: ["python", "stubborn.py"]\nparams: {type: object, properties: {pidfile: {type: string}}}\n'
        "resources: {timeout: 0.5}\n",
        {
            "stubborn.py": (
                "import os, signal, time\n"
                "from modelrunner import job\n"
                "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "open(job.params()['pidfile'], 'w').write(str(os.getpid()))\n"
                "time.sleep(30)\n"
            )
        },
    )
    pidfile = tmp_path / "stubborn.pid"
    run_id = submit(client, "stubborn", {"pidfile": str(pidfile)})["id"]

    pid = wait_until(lambda: read_pid(pidfile), 10, "stubborn model started")
    # Timeout 0.5 s + grace 1 s, and some slack for a loaded machine.
    wait_until(lambda: process_gone(pid), 5, f"model {pid} that ignores SIGTERM killed")
    assert wait_for_run(client.get, run_id, timeout=5)["status"] == "timed_out"


def test_a_run_of_an_unrecorded_model_version_fails_without_stalling_the_queue(client: TestClient) -> None:
    """Only a damaged store holds such a run (submit records the version first); the runs queued
    behind it must still run."""
    from modelrunner.store import queries

    platform = client.app.state.platform  # type: ignore[attr-defined]
    with platform.database.write() as session:
        orphan = queries.add_run(
            session,
            new_run_row(model_version="0000000000000000", cache_key="f" * 64),
        )
    healthy = client.post("/api/v1/models/noop/runs", json={"params": {"n": 42}}).json()
    assert wait_for_run(client.get, healthy["id"])["status"] == "succeeded"
    broken = wait_for_run(client.get, orphan.id)
    assert broken["status"] == "failed"
    assert "no recorded version 0000000000000000" in broken["error"]
