"""A firing: one decision of a schedule or a trigger to create runs, recorded together with the
runs it created, so that a firing and its runs exist together or not at all.

A firing is born in any of its statuses; only a waiting one changes later (``FIRING_TRANSITIONS``),
through ``_move``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from modelrunner.clock import utcnow
from modelrunner.engine.state_machine import TransitionTable, change_status
from modelrunner.engine.states import FINAL_RUN_STATES
from modelrunner.engine.submit import PreparedRun, SubmitOutcome, Submitter
from modelrunner.errors import AlreadyExists, ModelrunnerError
from modelrunner.store import automation_queries, queries
from modelrunner.store.tables import FiringRow

SCHEDULE = "schedule:"  # rule prefixes, as the firings table stores them
TRIGGER = "trigger:"
_FINAL = {state.value for state in FINAL_RUN_STATES}


class FiringStatus(StrEnum):
    SUBMITTED = "submitted"  # its runs were created (or answered from the cache, or joined)
    SKIPPED = "skipped"  # deliberately nothing: `detail` says why
    WAITING = "waiting"  # a schedule with `overlap: queue`: submits once the previous runs end
    FAILED = "failed"  # the runs could not be submitted: `detail` is the error


FIRING_TRANSITIONS = TransitionTable(
    "firing",
    {
        FiringStatus.WAITING: {FiringStatus.SUBMITTED, FiringStatus.FAILED, FiringStatus.SKIPPED},
        FiringStatus.SUBMITTED: set(),
        FiringStatus.SKIPPED: set(),
        FiringStatus.FAILED: set(),
    },
)


@dataclass(frozen=True)
class Plan:
    """What a firing would submit, checked before its transaction: the prepared runs, or the
    error that stops all of them (a firing submits all its runs or none)."""

    runs: list[PreparedRun]
    error: str | None = None


def plan(
    submitter: Submitter,
    model: str,
    parameter_sets: Sequence[Mapping[str, Any]],
    origin: Callable[[int], str],
    inputs: Mapping[str, str] | None = None,
    overrides: Sequence[Mapping[str, Any]] | None = None,
) -> Plan:
    """Prepare one run per parameter set (``origin(index)`` names what asked for each), each
    with its ``overrides`` (in the same order) if given. Prepare reads and may write the model's
    version record, so it must run outside a write transaction."""
    runs = []
    for index, params in enumerate(parameter_sets):
        own = overrides[index] if overrides is not None else None
        try:
            runs.append(submitter.prepare(model, dict(params), inputs=inputs, origin=origin(index), overrides=own))
        except ModelrunnerError as exc:
            where = f"item {index} of each: " if len(parameter_sets) > 1 else ""
            return Plan([], f"{where}{exc.message}")
    return Plan(runs)


@dataclass(frozen=True)
class Recorded:
    firing: FiringRow
    created: int  # runs queued for execution (not cache hits, not joined)


def record(
    session: Session,
    submitter: Submitter,
    rule: str,
    cause: str,
    planned: Plan,
    *,
    status: FiringStatus = FiringStatus.SUBMITTED,
    detail: str = "",
) -> Recorded | None:
    """Record the firing of ``rule`` for ``cause`` in the caller's write transaction, submitting
    the planned runs when ``status`` is submitted (a firing whose submit fails is recorded as
    failed, with the error as detail, and creates no run). None, with nothing written, if the
    rule already fired for this cause."""
    now = utcnow()
    try:
        with session.begin_nested():  # the firing and its runs, or neither
            run_ids: list[int] = []
            created = 0
            if status == FiringStatus.SUBMITTED:
                status, detail, run_ids, created = _submit(session, submitter, planned)
            firing = FiringRow(
                rule=rule,
                cause=cause,
                status=status.value,
                run_ids=run_ids,
                detail=detail,
                created_at=now,
                updated_at=now,
            )
            automation_queries.add_firing(session, firing)
    except AlreadyExists:
        return None  # UNIQUE(rule, cause): another server (or an earlier life of this one) fired
    return Recorded(firing, created)


def submit_waiting(session: Session, submitter: Submitter, firing: FiringRow, planned: Plan) -> Recorded | None:
    """Submit a waiting firing's runs in the caller's write transaction; None if it no longer
    waits (another server submitted it)."""
    # The lock first: a second server waits here and then finds the firing no longer waiting.
    if not automation_queries.lock_firing_in(session, firing.id, FiringStatus.WAITING.value):
        return None
    status, detail, run_ids, created = _submit(session, submitter, planned)
    _move(session, firing.id, FiringStatus.WAITING, status, detail=detail, run_ids=run_ids)
    updated = automation_queries.get_firing(session, firing.id)
    assert updated is not None
    return Recorded(updated, created)


def skip_waiting(session: Session, firing_id: int, detail: str) -> bool:
    """A waiting firing that will never submit (its schedule is gone or switched off)."""
    return _move(session, firing_id, FiringStatus.WAITING, FiringStatus.SKIPPED, detail=detail)


def unfinished_runs(session: Session, firing: FiringRow) -> list[int]:
    """The runs of ``firing`` still queued or going, sorted by id."""
    return sorted(
        run_id for run_id, status in queries.run_statuses(session, firing.run_ids).items() if status not in _FINAL
    )


def _move(session: Session, firing_id: int, source: FiringStatus, to: FiringStatus, **values: Any) -> bool:
    """The one way a firing changes status: compare-and-set from ``source`` (InvalidTransition if
    the table does not allow the move); False if the firing is no longer in ``source``."""
    changes = {"status": to.value, "updated_at": utcnow(), **values}
    return change_status(
        FIRING_TRANSITIONS,
        to,
        lambda sources: automation_queries.set_firing_if(session, firing_id, sources, changes),
        only_from={source},
    )


def _submit(session: Session, submitter: Submitter, planned: Plan) -> tuple[FiringStatus, str, list[int], int]:
    if planned.error is not None:
        return FiringStatus.FAILED, planned.error, [], 0
    try:
        with session.begin_nested():  # runs of a failing submit are rolled back, the firing stays
            submissions = [submitter.record(session, prepared) for prepared in planned.runs]
    except ModelrunnerError as exc:
        return FiringStatus.FAILED, exc.message, [], 0
    outcomes = [s.outcome for s in submissions]
    notes = [
        f"{outcomes.count(outcome)} {what}"
        for outcome, what in (
            (SubmitOutcome.CACHE_HIT, "answered from the cache"),
            (SubmitOutcome.JOINED, "joined an identical run"),
        )
        if outcome in outcomes
    ]
    created = outcomes.count(SubmitOutcome.CREATED)
    return FiringStatus.SUBMITTED, ", ".join(notes), [s.run.id for s in submissions], created
