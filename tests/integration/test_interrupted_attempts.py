"""Attempts that end through no fault of the model (preempted by the infrastructure, or lost)
spend their own retry budget, not the model's failure budget; the run records every attempt and
stores its outputs once. Driven through the engine's attempt functions on the real store, as a
backend's reports are."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from modelrunner.artifacts.store import StoredFile
from modelrunner.clock import utcnow
from modelrunner.engine import attempts
from modelrunner.engine.retry_policy import RetryPolicy
from modelrunner.engine.states import AttemptStatus
from modelrunner.execution.job import Outcome
from modelrunner.platform import Platform
from modelrunner.store import queries
from tests.integration.runs_api import write_model

OUTPUT = StoredFile("params.json", 2, "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "file:///x")


def attempt_of(platform: Platform, run_id: int) -> int:
    with platform.database.write() as session:
        claimed = attempts.claim(session, run_id, "local", "test-runner", utcnow() + dt.timedelta(minutes=1))
        assert claimed is not None, "the run was not queued"
        attempts.mark_started(session, claimed.attempt_id, {}, utcnow())
        return claimed.attempt_id


def end(platform: Platform, attempt_id: int, outcome: Outcome) -> None:
    """Record the ending as a server would that never saw the attempt: the retry budget is the
    one recorded with the run's model version, looked up afresh."""
    with platform.database.write() as session:
        attempts.finish(session, attempt_id, outcome, RetryPolicy(platform.catalog))


def queued_run(platform: Platform, workspace: Path, retries: str = "{}") -> int:
    """A queued run of a model with the budget ``retries`` (as written in model.yaml)."""
    write_model(workspace, "budgeted", f"command: [python, -c, pass]\nretries: {retries}\n")
    platform.prepare_store()
    return platform.submit("budgeted", {}).run.id


def test_a_run_preempted_twice_then_succeeding_has_three_attempts_and_its_outputs_once(
    platform: Platform, workspace: Path
) -> None:
    run_id = queued_run(platform, workspace, "{failed: 0, lost: 2}")  # no retry at all for a failure of the model
    for _ in range(2):
        end(platform, attempt_of(platform, run_id), Outcome(AttemptStatus.PREEMPTED, error="spot capacity reclaimed"))
    end(platform, attempt_of(platform, run_id), Outcome(AttemptStatus.SUCCEEDED, exit_code=0, outputs=[OUTPUT]))

    with platform.database.read() as session:
        run = queries.get_run(session, run_id)
        tried = queries.attempts_of(session, run_id)
        outputs = queries.outputs_of(session, run_id)
        events = queries.events_of(session, run_id, 0, 100)
    assert run is not None and run.status == "succeeded"
    assert [a.status for a in tried] == ["preempted", "preempted", "succeeded"]
    assert [o.path for o in outputs] == ["params.json"]
    statuses = [e.data["to"] for e in events if e.type == "run.status"]
    assert statuses.count("preempted") == 2 and statuses[-1] == "succeeded"
    reasons = [e.data.get("reason", "") for e in events if e.type == "run.status"]
    assert "retry 2 of 2 after a preemption" in reasons


def test_preemptions_beyond_the_budget_fail_the_run_saying_why(platform: Platform, workspace: Path) -> None:
    run_id = queued_run(platform, workspace, "{failed: 5, lost: 1}")
    end(platform, attempt_of(platform, run_id), Outcome(AttemptStatus.PREEMPTED, error="spot interruption"))
    end(platform, attempt_of(platform, run_id), Outcome(AttemptStatus.LOST, error="worker gone"))
    with platform.database.read() as session:
        run = queries.get_run(session, run_id)
    assert run is not None and run.status == "failed"
    assert run.error and "2 attempts were lost or preempted, no retries left" in run.error


def test_a_model_failure_does_not_spend_the_preemption_budget_nor_the_reverse(
    platform: Platform, workspace: Path
) -> None:
    run_id = queued_run(platform, workspace, "{failed: 1, lost: 1}")
    end(platform, attempt_of(platform, run_id), Outcome(AttemptStatus.FAILED, exit_code=1, error="exit 1"))
    end(platform, attempt_of(platform, run_id), Outcome(AttemptStatus.PREEMPTED, error="evicted"))
    end(platform, attempt_of(platform, run_id), Outcome(AttemptStatus.SUCCEEDED, exit_code=0, outputs=[OUTPUT]))
    with platform.database.read() as session:
        run = queries.get_run(session, run_id)
        tried = queries.attempts_of(session, run_id)
    assert run is not None and run.status == "succeeded"
    assert [a.status for a in tried] == ["failed", "preempted", "succeeded"]


def test_a_preemption_reported_after_the_run_was_cancelled_ends_the_attempt_and_not_the_run_again(
    platform: Platform, workspace: Path
) -> None:
    run_id = queued_run(platform, workspace)
    attempt_id = attempt_of(platform, run_id)
    with platform.database.write() as session:
        attempts.cancel(session, run_id)
    end(platform, attempt_id, Outcome(AttemptStatus.PREEMPTED, error="spot interruption"))
    with platform.database.read() as session:
        run = queries.get_run(session, run_id)
        [attempt] = queries.attempts_of(session, run_id)
    assert run is not None and run.status == "cancelled"
    assert attempt.status == "preempted" and attempt.finished_at is not None
