"""Attempts change only through their transition function: the table of allowed attempt
transitions is enforced in the store, every change is an ``attempt.status`` event of the run,
and the retry budget is the model version's even for an attempt the server never launched."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from fastapi.testclient import TestClient

from modelrunner.backends.base import Finished
from modelrunner.clock import utcnow
from modelrunner.engine import attempts
from modelrunner.engine.runner_identity import HOST
from modelrunner.engine.states import AttemptStatus
from modelrunner.engine.transition import transition_attempt
from modelrunner.execution.job import Outcome
from modelrunner.platform import Platform
from modelrunner.store import queries
from tests.conftest import wait_for_run
from tests.integration.runs_api import events, submit, write_model

# A runner id of this host whose process is gone: its pid runs, but was not started then.
DEAD_RUNNER = f"{HOST}:1:1.000"


def claimed_attempt(platform: Platform, run_id: int, runner_id: str = "test-runner") -> int:
    with platform.database.write() as session:
        claimed = attempts.claim(session, run_id, "local", runner_id, utcnow() + dt.timedelta(minutes=1))
        assert claimed is not None, "the run was not queued"
        return claimed.attempt_id


def queued_run(platform: Platform, workspace: Path, retries: str) -> int:
    write_model(workspace, "budgeted", f"command: [python, -c, pass]\nretries: {retries}\n")
    platform.prepare_store()
    return platform.submit("budgeted", {}).run.id


def attempt_events(platform: Platform, run_id: int) -> list[dict[str, object]]:
    with platform.database.read() as session:
        return [e.data for e in queries.events_of(session, run_id, 0, 100) if e.type == "attempt.status"]


def test_an_attempt_that_ended_is_refused_any_other_ending_and_no_event_is_written(
    platform: Platform, workspace: Path
) -> None:
    run_id = queued_run(platform, workspace, "{}")
    attempt_id = claimed_attempt(platform, run_id)
    with platform.database.write() as session:
        attempts.mark_started(session, attempt_id, {}, utcnow())
    with platform.database.write() as session:
        assert transition_attempt(session, attempt_id, AttemptStatus.SUCCEEDED, exit_code=0) is not None
    before = attempt_events(platform, run_id)

    with platform.database.write() as session:
        assert transition_attempt(session, attempt_id, AttemptStatus.FAILED, reason="late news", exit_code=1) is None
        assert transition_attempt(session, attempt_id, AttemptStatus.RUNNING) is None

    with platform.database.read() as session:
        [attempt] = queries.attempts_of(session, run_id)
    assert (attempt.status, attempt.exit_code) == ("succeeded", 0)
    assert attempt_events(platform, run_id) == before


def test_a_running_attempt_is_refused_a_second_start(platform: Platform, workspace: Path) -> None:
    run_id = queued_run(platform, workspace, "{}")
    attempt_id = claimed_attempt(platform, run_id)
    first = utcnow()
    with platform.database.write() as session:
        assert transition_attempt(session, attempt_id, AttemptStatus.RUNNING, started_at=first) is not None
    with platform.database.write() as session:
        assert transition_attempt(session, attempt_id, AttemptStatus.RUNNING, started_at=utcnow()) is None
    with platform.database.read() as session:
        [attempt] = queries.attempts_of(session, run_id)
    assert attempt.started_at == first
    assert [(e["from"], e["to"]) for e in attempt_events(platform, run_id)] == [
        (None, "starting"),
        ("starting", "running"),
    ]


def test_every_attempt_change_is_an_event_of_the_run(client: TestClient) -> None:
    run_id = submit(client, "noop", {"n": 31})["id"]
    assert [a["status"] for a in wait_for_run(client.get, run_id)["attempts"]] == ["succeeded"]

    changes = [e["data"] for e in events(client, run_id) if e["type"] == "attempt.status"]

    attempt_id = changes[0]["attempt_id"]
    assert changes == [
        {"attempt_id": attempt_id, "number": 1, "from": None, "to": "starting"},
        {"attempt_id": attempt_id, "number": 1, "from": "starting", "to": "running"},
        {"attempt_id": attempt_id, "number": 1, "from": "running", "to": "succeeded"},
    ]


def test_a_failure_reported_to_a_server_that_did_not_launch_the_attempt_spends_the_models_budget(
    platform: Platform, workspace: Path
) -> None:
    run_id = queued_run(platform, workspace, "{failed: 1}")
    attempt_id = claimed_attempt(platform, run_id)
    dispatcher = platform.dispatcher["local"]  # a server just started: the attempt is not in its memory
    failed = Finished(attempt_id, Outcome(AttemptStatus.FAILED, exit_code=1, error="exit 1"))

    with platform.database.write() as session:
        dispatcher._record_reports(session, [failed], one_by_one=False)

    with platform.database.read() as session:
        run = queries.get_run(session, run_id)
        reasons = [e.data.get("reason") for e in queries.events_of(session, run_id, 0, 100) if e.type == "run.status"]
    assert run is not None and run.status == "queued"
    assert "attempt 1 failed (exit 1); retry 1 of 1" in reasons
    assert attempt_events(platform, run_id)[-1] == {
        "attempt_id": attempt_id,
        "number": 1,
        "from": "starting",
        "to": "failed",
        "reason": "exit 1",
    }


def test_an_attempt_of_a_dead_server_is_lost_on_the_models_budget(platform: Platform, workspace: Path) -> None:
    run_id = queued_run(platform, workspace, "{lost: 0}")
    claimed_attempt(platform, run_id, runner_id=DEAD_RUNNER)

    platform.start()  # recovers the attempts of dead runners of this host
    platform.stop()

    with platform.database.read() as session:
        run = queries.get_run(session, run_id)
        [attempt] = queries.attempts_of(session, run_id)
    assert attempt.status == "lost"
    assert run is not None and run.status == "failed"
    assert run.error and "1 attempts were lost or preempted, no retries left" in run.error


def test_progress_from_an_attempt_still_starting_for_the_engine_is_kept(platform: Platform, workspace: Path) -> None:
    # A remote model's first reports can reach the server before its backend says it started.
    run_id = queued_run(platform, workspace, "{}")
    attempt_id = claimed_attempt(platform, run_id)
    with platform.database.write() as session:
        attempts.record_progress(session, attempt_id, 0.3, "step 3 of 10")
    with platform.database.read() as session:
        run = queries.get_run(session, run_id)
        progress = [e.data for e in queries.events_of(session, run_id, 0, 100) if e.type == "run.progress"]
    assert run is not None and (run.status, run.progress_fraction, run.progress_message) == (
        "starting",
        0.3,
        "step 3 of 10",
    )
    assert progress == [{"fraction": 0.3, "message": "step 3 of 10"}]
