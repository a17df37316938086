"""How attempts begin, report and end, and what each ending means for their run."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from modelrunner.auth import secrets
from modelrunner.clock import utcnow
from modelrunner.engine import retry_policy, run_events
from modelrunner.engine.retry_policy import RetryPolicy
from modelrunner.engine.states import ACTIVE_ATTEMPT_STATES, FINAL_RUN_STATES, AttemptStatus, RunStatus
from modelrunner.engine.transition import create_attempt, transition, transition_attempt
from modelrunner.errors import Conflict, InvalidTransition, NotFound
from modelrunner.execution.job import Outcome
from modelrunner.store import partial_output_queries, queries


@dataclass(frozen=True)
class Claimed:
    attempt_id: int
    number: int
    callback_token: str  # reports this attempt's progress; only its digest is stored
    interrupted_before: int  # earlier attempts of the run that were lost or preempted


_OUTCOME_TO_RUN = {
    AttemptStatus.SUCCEEDED: RunStatus.SUCCEEDED,
    AttemptStatus.TIMED_OUT: RunStatus.TIMED_OUT,
    AttemptStatus.CANCELLED: RunStatus.CANCELLED,
}
# Endings that are no fault of the model: another attempt, on the budget for such endings.
_INTERRUPTED_TO_RUN = {AttemptStatus.LOST: RunStatus.LOST, AttemptStatus.PREEMPTED: RunStatus.PREEMPTED}


def claim(session: Session, run_id: int, backend: str, runner_id: str, lease_until: dt.datetime) -> Claimed | None:
    """Take a queued run for a new attempt; None if another runner took it first."""
    try:
        if not transition(session, run_id, RunStatus.STARTING, only_from=frozenset({RunStatus.QUEUED})):
            return None
    except InvalidTransition:
        return None
    earlier, interrupted = queries.tally_attempts(session, run_id, retry_policy.INTERRUPTED)
    number = earlier + 1
    minted = secrets.mint()
    values = {
        "backend": backend,
        "runner_id": runner_id,
        "lease_expires_at": lease_until,
        "callback_token_hash": minted.digest,
    }
    attempt_id = create_attempt(session, run_id, number, values, utcnow())
    token = secrets.compose(secrets.ATTEMPT_TOKEN, attempt_id, minted.secret)
    return Claimed(attempt_id, number, token, interrupted)


def mark_started(session: Session, attempt_id: int, handle: dict[str, Any], at: dt.datetime) -> None:
    """The attempt's process runs since ``at``: record how to reach it and move the run to running."""
    attempt = transition_attempt(session, attempt_id, AttemptStatus.RUNNING, handle=handle, started_at=at)
    if attempt is not None:
        _unless_ended(session, attempt.run_id, RunStatus.RUNNING, started_at=at)


def record_progress(session: Session, attempt_id: int, fraction: float, message: str) -> None:
    """The attempt's model says how far it got. Also while the attempt is still starting for the
    engine: a remote model's first reports can come before its backend says it started, and a
    short run would otherwise lose them all."""
    found = queries.attempt_status(session, attempt_id)
    if found is None or AttemptStatus(found[1]) not in ACTIVE_ATTEMPT_STATES:
        return
    run_id = found[0]
    if queries.set_run_progress(session, run_id, fraction, message or None):
        queries.add_event(session, run_id, "run.progress", {"fraction": fraction, "message": message}, utcnow())


def finish(session: Session, attempt_id: int, outcome: Outcome, policy: RetryPolicy) -> None:
    """Record how the attempt ended; the run succeeds, ends, or is queued for another attempt
    as ``policy`` decides.

    An attempt that already ended (e.g. declared lost while it was unreachable) changes nothing,
    so a result is never published twice.
    """
    attempt = transition_attempt(
        session,
        attempt_id,
        outcome.status,
        reason=outcome.error,
        exit_code=outcome.exit_code,
        error=outcome.error,
        finished_at=utcnow(),
    )
    if attempt is None:
        return
    run_id = attempt.run_id
    if outcome.partial_outputs and outcome.status != AttemptStatus.SUCCEEDED:
        # Recorded per attempt, never as the run's outputs: no result, cache hit or input comes of them.
        partial_output_queries.add_partial_outputs(session, attempt_id, (f.as_row() for f in outcome.partial_outputs))
    if outcome.status == AttemptStatus.SUCCEEDED:
        if _unless_ended(session, run_id, RunStatus.SUCCEEDED, progress_fraction=1.0):
            queries.add_outputs(session, run_id, (stored.as_row() for stored in outcome.outputs))
            run_events.add_succeeded(session, run_id)
        return
    if outcome.status in _OUTCOME_TO_RUN:
        _unless_ended(session, run_id, _OUTCOME_TO_RUN[outcome.status], reason=outcome.error)
        return
    if outcome.status in _INTERRUPTED_TO_RUN:
        reason = outcome.error or f"attempt {attempt.number} {outcome.status.value}"
        _retry_interrupted(session, run_id, _INTERRUPTED_TO_RUN[outcome.status], reason, policy)
        return
    decision = policy.after_failure(session, run_id, attempt.number, outcome.error)
    _unless_ended(session, run_id, decision.to, reason=decision.reason)


def renew_lease(session: Session, attempt_id: int, until: dt.datetime) -> None:
    """The attempt's runner lives: its lease runs until ``until``. An attempt that ended has no
    lease to renew, so a late heartbeat changes nothing."""
    queries.renew_lease(session, attempt_id, until)


def lose(session: Session, attempt_id: int, reason: str, policy: RetryPolicy) -> bool:
    """The attempt's runner is gone (lease expired, or its process died): retry as ``policy``
    decides.

    Returns False when the attempt had already ended.
    """
    attempt = transition_attempt(
        session, attempt_id, AttemptStatus.LOST, reason=reason, error=reason, finished_at=utcnow()
    )
    if attempt is None:
        return False
    _retry_interrupted(session, attempt.run_id, RunStatus.LOST, reason, policy)
    return True


def _retry_interrupted(session: Session, run_id: int, status: RunStatus, reason: str, policy: RetryPolicy) -> None:
    """The run's attempt was lost or preempted, through no fault of the model: the run passes
    through ``status`` and is queued again within the budget such endings share and model
    failures do not spend."""
    if not _unless_ended(session, run_id, status, reason=reason):
        return
    decision = policy.after_interruption(session, run_id, status, reason)
    transition(session, run_id, decision.to, reason=decision.reason)


def interrupt(session: Session, attempt_id: int, reason: str) -> None:
    """The attempt is given up through no fault of its model: its runner stops on purpose (a
    server shutting down), or its backend could not be reached to launch it. It ends as
    cancelled and the run is queued again without spending any retry budget."""
    attempt = transition_attempt(
        session, attempt_id, AttemptStatus.CANCELLED, reason=reason, error=reason, finished_at=utcnow()
    )
    if attempt is not None:
        _unless_ended(session, attempt.run_id, RunStatus.QUEUED, reason=reason)


def cancel(session: Session, run_id: int) -> None:
    """Cancel a run (idempotent), and the unfinished steps of a pipeline run; running attempts
    are stopped by the runners that hold them."""
    status = _status(session, run_id)
    if status == RunStatus.CANCELLED.value:
        return
    if status in FINAL_RUN_STATES:
        raise Conflict(f"run {run_id} already ended ({status}); only unfinished runs can be cancelled", run=run_id)
    transition(session, run_id, RunStatus.CANCELLED, reason="cancelled on request")
    for child in queries.active_children(session, run_id):
        _unless_ended(session, child, RunStatus.CANCELLED, reason=f"its pipeline run {run_id} was cancelled")


def _unless_ended(session: Session, run_id: int, to: RunStatus, **kwargs: Any) -> bool:
    """Transition, except for a run that already ended (cancelled while its attempt ran): an
    attempt's late news never reopens a final run. True if the run moved."""
    try:
        return transition(session, run_id, to, **kwargs)
    except InvalidTransition as exc:
        if exc.details.get("status") in FINAL_RUN_STATES:
            return False
        raise


def _status(session: Session, run_id: int) -> str:
    status = queries.lock_run_status(session, run_id)
    if status is None:
        raise NotFound(f"unknown run {run_id}", run=run_id)
    return status
