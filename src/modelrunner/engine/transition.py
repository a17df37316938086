"""The one function through which every run state change passes."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from modelrunner.clock import utcnow
from modelrunner.engine.states import FINAL_RUN_STATES, RunStatus, sources_of
from modelrunner.errors import InvalidTransition, NotFound
from modelrunner.store import queries


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

    previous = queries.lock_run_status(session, run_id)
    if previous is None:
        raise NotFound(f"unknown run {run_id}", run=run_id)
    if previous == to.value:
        return False
    if previous not in allowed or not queries.set_run_status_if(session, run_id, [s.value for s in allowed], changes):
        raise InvalidTransition(f"run {run_id} is {previous}; it cannot become {to.value}", run=run_id, status=previous)
    data: dict[str, Any] = {"from": previous, "to": to.value}
    if reason:
        data["reason"] = reason
    queries.add_event(session, run_id, "run.status", data, now)
    return True
