"""How attempts begin, report and end, and what each ending means for their run."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from modelrunner.clock import utcnow
from modelrunner.engine.states import FINAL_RUN_STATES, AttemptStatus, RunStatus
from modelrunner.engine.transition import transition
from modelrunner.errors import Conflict, InvalidTransition, NotFound
from modelrunner.execution.job import Outcome
from modelrunner.spec.model_spec import Retries
from modelrunner.store import queries
from modelrunner.store.tables import AttemptRow, RunRow

_OUTCOME_TO_RUN = {
    AttemptStatus.SUCCEEDED: RunStatus.SUCCEEDED,
    AttemptStatus.TIMED_OUT: RunStatus.TIMED_OUT,
    AttemptStatus.CANCELLED: RunStatus.CANCELLED,
}


def claim(session: Session, run_id: int, backend: str, runner_id: str, lease_until: dt.datetime) -> AttemptRow | None:
    """Take a queued run for a new attempt; None if another runner took it first."""
    try:
        if not transition(session, run_id, RunStatus.STARTING, only_from=frozenset({RunStatus.QUEUED})):
            return None
    except InvalidTransition:
        return None
    now = utcnow()
    return queries.add_attempt(
        session,
        AttemptRow(
            run_id=run_id,
            number=queries.count_attempts(session, run_id) + 1,
            status=AttemptStatus.STARTING.value,
            backend=backend,
            runner_id=runner_id,
            lease_expires_at=lease_until,
            created_at=now,
        ),
    )


def mark_started(session: Session, attempt_id: int, handle: dict[str, Any]) -> None:
    """The attempt's process is running: record how to reach it and move the run to running."""
    now = utcnow()
    if not queries.set_attempt_if_active(
        session,
        attempt_id,
        {"status": AttemptStatus.RUNNING.value, "handle": handle, "started_at": now},
    ):
        return
    attempt = _attempt(session, attempt_id)
    _move_unless_final(session, attempt.run_id, RunStatus.RUNNING)


def record_progress(session: Session, attempt_id: int, fraction: float, message: str) -> None:
    attempt = _attempt(session, attempt_id)
    if attempt.status != AttemptStatus.RUNNING.value:
        return
    if queries.set_run_progress(session, attempt.run_id, fraction, message or None):
        queries.add_event(
            session,
            attempt.run_id,
            "run.progress",
            {"fraction": fraction, "message": message},
            utcnow(),
        )


def finish(session: Session, attempt_id: int, outcome: Outcome, retries: Retries) -> None:
    """Record how the attempt ended; the run succeeds, ends, or is queued for another attempt.

    An attempt that already ended (e.g. declared lost while it was unreachable) changes nothing,
    so a result is never published twice.
    """
    now = utcnow()
    if not queries.set_attempt_if_active(
        session,
        attempt_id,
        {
            "status": outcome.status.value,
            "exit_code": outcome.exit_code,
            "error": outcome.error,
            "finished_at": now,
        },
    ):
        return
    attempt = _attempt(session, attempt_id)
    run = _run(session, attempt.run_id)
    if run.status in FINAL_RUN_STATES:
        return  # cancelled while it ran: the attempt's end is recorded, the run stays as it is
    if outcome.status == AttemptStatus.SUCCEEDED:
        queries.add_outputs(session, run.id, (stored.as_row() for stored in outcome.outputs))
        transition(session, run.id, RunStatus.SUCCEEDED, progress_fraction=1.0)
        return
    if outcome.status in _OUTCOME_TO_RUN:
        transition(session, run.id, _OUTCOME_TO_RUN[outcome.status], reason=outcome.error)
        return
    failures = queries.count_attempts(session, run.id, [AttemptStatus.FAILED.value])
    if failures <= retries.failed:
        reason = f"attempt {attempt.number} failed ({outcome.error}); retry {failures} of {retries.failed}"
        transition(session, run.id, RunStatus.QUEUED, reason=reason)
    else:
        transition(session, run.id, RunStatus.FAILED, reason=outcome.error)


def lose(session: Session, attempt_id: int, reason: str, retries: Retries) -> bool:
    """The attempt's runner is gone (lease expired, or its process died): retry within budget.

    Returns False when the attempt had already ended.
    """
    if not queries.set_attempt_if_active(
        session,
        attempt_id,
        {"status": AttemptStatus.LOST.value, "error": reason, "finished_at": utcnow()},
    ):
        return False
    attempt = _attempt(session, attempt_id)
    run = _run(session, attempt.run_id)
    if run.status in FINAL_RUN_STATES:
        return True
    transition(session, run.id, RunStatus.LOST, reason=reason)
    lost = queries.count_attempts(session, run.id, [AttemptStatus.LOST.value, AttemptStatus.PREEMPTED.value])
    if lost <= retries.lost:
        transition(
            session,
            run.id,
            RunStatus.QUEUED,
            reason=f"retry {lost} of {retries.lost} after a lost attempt",
        )
    else:
        transition(
            session,
            run.id,
            RunStatus.FAILED,
            reason=f"{reason}; {lost} attempts were lost, no retries left",
        )
    return True


def cancel(session: Session, run_id: int) -> RunRow:
    """Cancel a run; its running attempt is stopped by the runner that holds it."""
    run = _run(session, run_id)
    if run.status == RunStatus.CANCELLED.value:
        return run
    if run.status in FINAL_RUN_STATES:
        raise Conflict(
            f"run {run_id} already ended ({run.status}); only unfinished runs can be cancelled",
            run=run_id,
        )
    transition(session, run_id, RunStatus.CANCELLED, reason="cancelled on request")
    return run


def _move_unless_final(session: Session, run_id: int, to: RunStatus) -> None:
    run = _run(session, run_id)
    if run.status not in FINAL_RUN_STATES:
        transition(session, run_id, to)


def _attempt(session: Session, attempt_id: int) -> AttemptRow:
    attempt = queries.get_attempt(session, attempt_id)
    if attempt is None:
        raise NotFound(f"unknown attempt {attempt_id}")
    return attempt


def _run(session: Session, run_id: int) -> RunRow:
    run = queries.get_run(session, run_id)
    if run is None:
        raise NotFound(f"unknown run {run_id}", run=run_id)
    return run
