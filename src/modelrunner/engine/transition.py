"""The state machines of runs and attempts: how each is born and the one function through
which each of its state changes passes, every one leaving an event in the run's events."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from modelrunner.clock import utcnow
from modelrunner.engine.states import (
    FINAL_RUN_STATES,
    INITIAL_RUN_STATES,
    AttemptStatus,
    RunStatus,
    attempt_sources_of,
    sources_of,
)
from modelrunner.errors import InvalidTransition, NotFound
from modelrunner.store import queries
from modelrunner.store.tables import RunRow

RUN_STATUS = "run.status"
ATTEMPT_STATUS = "attempt.status"


def create_run(session: Session, run: RunRow, **event_data: Any) -> RunRow:
    """Insert ``run`` (it gets its id) and its first ``run.status`` event, from nothing to its
    status, in the caller's transaction: every way a run is born passes here. ``event_data``
    adds to the event's data (a cache hit names the run whose result it shares). Two statements,
    no read."""
    if run.status not in INITIAL_RUN_STATES:
        raise InvalidTransition(f"a run cannot be born {run.status}", status=run.status)
    queries.add_run(session, run)
    queries.add_event(session, run.id, RUN_STATUS, {"from": None, "to": run.status, **event_data}, run.created_at)
    return run


def create_runs(session: Session, runs: Sequence[RunRow]) -> None:
    """``create_run`` for runs born together (a batch submit), in the caller's transaction: each
    run gets its id, in order, and their first ``run.status`` events go in one statement. Nothing
    is inserted when one of them cannot be born."""
    for run in runs:
        if run.status not in INITIAL_RUN_STATES:
            raise InvalidTransition(f"a run cannot be born {run.status}", status=run.status)
    for run in runs:
        queries.add_run(session, run)  # one statement a run: each returns the id its event needs
    first_events = [
        {
            "run_id": run.id,
            "type": RUN_STATUS,
            "data": {"from": None, "to": run.status},
            "created_at": run.created_at,
        }
        for run in runs
    ]
    queries.add_events(session, first_events)


def transition(
    session: Session,
    run_id: int,
    to: RunStatus,
    *,
    reason: str | None = None,
    only_from: frozenset[RunStatus] | None = None,
    **values: Any,
) -> bool:
    """Move a run to ``to`` and append a ``run.status`` event, atomically with the caller's work.

    Compare-and-set in the database: the update applies only while the run is in a state the
    transition table allows (narrowed further by ``only_from``). Returns True when the run moved,
    False when it already was in ``to`` (calling twice is safe). Raises InvalidTransition when
    the run is elsewhere, NotFound when there is no such run.
    """
    allowed = sources_of(to) if only_from is None else sources_of(to) & only_from
    now = utcnow()
    changes: dict[str, Any] = {"status": to.value, **values}
    if to == RunStatus.RUNNING:
        changes.setdefault("started_at", now)  # the store keeps the first start across retries
    if to in FINAL_RUN_STATES:
        changes.setdefault("finished_at", now)
    if to == RunStatus.QUEUED:
        changes.update(progress_fraction=None, progress_message=None)
    if reason is not None and to in (RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.CANCELLED):
        changes.setdefault("error", reason)

    # Where only one state leads to ``to`` (queued -> starting -> running -> succeeded, the path
    # of every run), the compare-and-set alone says where the run came from: no read first.
    moved = len(allowed) == 1 and queries.set_run_status_if(session, run_id, [s.value for s in allowed], changes)
    if moved:
        previous: str | None = next(iter(allowed)).value
    else:
        previous = queries.lock_run_status(session, run_id)
        if previous is None:
            raise NotFound(f"unknown run {run_id}", run=run_id)
        if previous == to.value:
            return False
        allowed_values = [s.value for s in allowed]
        if previous not in allowed or not queries.set_run_status_if(session, run_id, allowed_values, changes):
            raise InvalidTransition(
                f"run {run_id} is {previous}; it cannot become {to.value}", run=run_id, status=previous
            )
    data: dict[str, Any] = {"from": previous, "to": to.value}
    if reason:
        data["reason"] = reason
    queries.add_event(session, run_id, RUN_STATUS, data, now)
    return True


def create_attempt(session: Session, run_id: int, number: int, values: dict[str, Any], at: dt.datetime) -> int:
    """Insert attempt ``number`` of the run, starting, and its first ``attempt.status`` event;
    its id. ``values`` are the attempt's other columns (backend, runner, lease, token digest)."""
    starting = AttemptStatus.STARTING.value
    attempt_id = queries.add_attempt(
        session, {"run_id": run_id, "number": number, "status": starting, "created_at": at, **values}
    )
    data = {"attempt_id": attempt_id, "number": number, "from": None, "to": starting}
    queries.add_event(session, run_id, ATTEMPT_STATUS, data, at)
    return attempt_id


def transition_attempt(
    session: Session, attempt_id: int, to: AttemptStatus, *, reason: str | None = None, **values: Any
) -> queries.ChangedAttempt | None:
    """Move an attempt to ``to`` (with ``values`` for its other columns) and append an
    ``attempt.status`` event to its run's events, atomically with the caller's work.

    Compare-and-set in the database against the table of allowed attempt transitions: one
    update per possible source state, the likeliest first, so a change mostly costs one update
    and the event. Returns the attempt (its run, its number) when it moved; None when the table
    refuses the move from where the attempt is, e.g. an attempt that already ended: an
    attempt's late news changes nothing and publishes nothing twice.
    """
    changes = {"status": to.value, **values}
    changed = None
    for source in attempt_sources_of(to):
        changed = queries.set_attempt_if(session, attempt_id, source.value, changes)
        if changed is not None:
            break
    if changed is None:
        return None
    data: dict[str, Any] = {"attempt_id": attempt_id, "number": changed.number, "from": source.value, "to": to.value}
    if reason:
        data["reason"] = reason
    queries.add_event(session, changed.run_id, ATTEMPT_STATUS, data, utcnow())
    return changed
