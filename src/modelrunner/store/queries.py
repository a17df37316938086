"""Every query modelrunner runs, by name. Callers pass the session (and so the transaction)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, func, insert, literal, select, update
from sqlalchemy.orm import Session

from modelrunner.engine.states import ACTIVE_ATTEMPT_STATES, ACTIVE_RUN_STATES, RunStatus
from modelrunner.store.tables import AttemptRow, EventRow, ModelVersionRow, OutputRow, RunRow

# The hot paths of the dispatcher use Core statements on these tables: no ORM bookkeeping.
_runs: Table = RunRow.__table__  # type: ignore[assignment]
_attempts: Table = AttemptRow.__table__  # type: ignore[assignment]
_outputs: Table = OutputRow.__table__  # type: ignore[assignment]
_events: Table = EventRow.__table__  # type: ignore[assignment]
_ACTIVE_ATTEMPTS = [s.value for s in ACTIVE_ATTEMPT_STATES]

# --- model versions ---------------------------------------------------------------------------


def get_model_version(session: Session, name: str, version: str) -> ModelVersionRow | None:
    return session.get(ModelVersionRow, (name, version))


def add_model_version(session: Session, row: ModelVersionRow) -> None:
    session.add(row)


# --- runs ---------------------------------------------------------------------------------------


def get_run(session: Session, run_id: int) -> RunRow | None:
    return session.get(RunRow, run_id)


def lock_run_status(session: Session, run_id: int) -> str | None:
    """The run's status, its row locked for this transaction (SQLite's BEGIN IMMEDIATE already
    serialises writers); None if there is no such run."""
    statement = select(_runs.c.status).where(_runs.c.id == run_id).with_for_update()
    return session.execute(statement).scalar_one_or_none()


def add_run(session: Session, row: RunRow) -> RunRow:
    """Insert the run (a Core insert: no ORM flush on the submit path); ``row`` gets its id."""
    values = {column.key: getattr(row, column.key) for column in _runs.columns if column.key != "id"}
    row.id = int(session.execute(insert(_runs).values(**values).returning(_runs.c.id)).scalar_one())
    return row


def active_run_for_key(session: Session, cache_key: str) -> RunRow | None:
    statement = select(RunRow).where(
        RunRow.cache_key == cache_key, RunRow.status.in_([s.value for s in ACTIVE_RUN_STATES])
    )
    return session.scalars(statement).first()


def latest_computed_success(session: Session, cache_key: str, finished_after: dt.datetime | None) -> RunRow | None:
    """The newest run that computed (not copied from the cache) this key successfully."""
    statement = select(RunRow).where(
        RunRow.cache_key == cache_key,
        RunRow.status == RunStatus.SUCCEEDED.value,
        RunRow.cache_hit.is_(False),
    )
    if finished_after is not None:
        statement = statement.where(RunRow.finished_at >= finished_after)
    return session.scalars(statement.order_by(RunRow.finished_at.desc()).limit(1)).first()


def list_runs(
    session: Session,
    *,
    model: str | None,
    statuses: Collection[str],
    before_id: int | None,
    limit: int,
) -> list[RunRow]:
    """Newest first; ``before_id`` continues a previous page."""
    statement = select(RunRow)
    if model is not None:
        statement = statement.where(RunRow.model_name == model)
    if statuses:
        statement = statement.where(RunRow.status.in_(list(statuses)))
    if before_id is not None:
        statement = statement.where(RunRow.id < before_id)
    return list(session.scalars(statement.order_by(RunRow.id.desc()).limit(limit)))


@dataclass(frozen=True)
class QueuedRun:
    id: int
    model_name: str
    model_version: str
    params: dict[str, Any]
    slots: int


def queued_runs(session: Session, limit: int) -> list[QueuedRun]:
    """The oldest queued runs, first come first served."""
    columns = (_runs.c.id, _runs.c.model_name, _runs.c.model_version, _runs.c.params, _runs.c.slots)
    statement = select(*columns).where(_runs.c.status == RunStatus.QUEUED.value).order_by(_runs.c.id).limit(limit)
    return [QueuedRun(*row) for row in session.execute(statement)]


def run_statuses(session: Session, run_ids: Iterable[int]) -> dict[int, str]:
    ids = list(run_ids)
    if not ids:
        return {}
    return dict(session.execute(select(RunRow.id, RunRow.status).where(RunRow.id.in_(ids))).all())


def set_run_status_if(session: Session, run_id: int, allowed_from: Collection[str], values: dict[str, Any]) -> bool:
    """Compare-and-set: change the run only if its status is one of ``allowed_from``."""
    statement = update(_runs).where(_runs.c.id == run_id, _runs.c.status.in_(list(allowed_from))).values(**values)
    return bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]


def set_run_progress(session: Session, run_id: int, fraction: float | None, message: str | None) -> bool:
    statement = (
        update(_runs)
        .where(_runs.c.id == run_id, _runs.c.status == RunStatus.RUNNING.value)
        .values(progress_fraction=fraction, progress_message=message)
    )
    return bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]


def count_runs_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(RunRow.status, func.count()).group_by(RunRow.status)).all()
    return dict(rows)


# --- attempts -----------------------------------------------------------------------------------


def add_attempt(session: Session, values: dict[str, Any]) -> int:
    """Insert an attempt; its id."""
    return int(session.execute(insert(_attempts).values(**values).returning(_attempts.c.id)).scalar_one())


def attempts_of(session: Session, run_id: int) -> list[AttemptRow]:
    return list(session.scalars(select(AttemptRow).where(AttemptRow.run_id == run_id).order_by(AttemptRow.number)))


def count_attempts(session: Session, run_id: int, statuses: Collection[str] | None = None) -> int:
    statement = select(func.count()).select_from(_attempts).where(_attempts.c.run_id == run_id)
    if statuses is not None:
        statement = statement.where(_attempts.c.status.in_(list(statuses)))
    return int(session.scalar(statement) or 0)


@dataclass(frozen=True)
class EndedAttempt:
    run_id: int
    number: int


def set_attempt_if_active(session: Session, attempt_id: int, values: dict[str, Any]) -> EndedAttempt | None:
    """Change an attempt that is still starting or running; None if it already ended."""
    statement = (
        update(_attempts)
        .where(_attempts.c.id == attempt_id, _attempts.c.status.in_(_ACTIVE_ATTEMPTS))
        .values(**values)
        .returning(_attempts.c.run_id, _attempts.c.number)
    )
    row = session.execute(statement).first()
    return EndedAttempt(row.run_id, row.number) if row else None


def attempt_status(session: Session, attempt_id: int) -> tuple[int, str] | None:
    """The attempt's run id and status."""
    row = session.execute(select(_attempts.c.run_id, _attempts.c.status).where(_attempts.c.id == attempt_id)).first()
    return (row.run_id, row.status) if row else None


def renew_leases(session: Session, runner_id: str, attempt_ids: Collection[int], expires_at: dt.datetime) -> None:
    if attempt_ids:
        session.execute(
            update(AttemptRow)
            .where(
                AttemptRow.runner_id == runner_id,
                AttemptRow.id.in_(list(attempt_ids)),
                AttemptRow.status.in_([s.value for s in ACTIVE_ATTEMPT_STATES]),
            )
            .values(lease_expires_at=expires_at)
        )


def active_attempts(session: Session) -> list[AttemptRow]:
    statement = select(AttemptRow).where(AttemptRow.status.in_([s.value for s in ACTIVE_ATTEMPT_STATES]))
    return list(session.scalars(statement))


def expired_attempts(session: Session, now: dt.datetime) -> list[AttemptRow]:
    statement = select(AttemptRow).where(
        AttemptRow.status.in_([s.value for s in ACTIVE_ATTEMPT_STATES]),
        AttemptRow.lease_expires_at < now,
    )
    return list(session.scalars(statement))


# --- outputs ------------------------------------------------------------------------------------


def add_outputs(session: Session, run_id: int, outputs: Iterable[dict[str, Any]]) -> None:
    rows = [{"run_id": run_id, **output} for output in outputs]
    if rows:
        session.execute(insert(_outputs), rows)


def copy_outputs(session: Session, source_run_id: int, target_run_id: int) -> None:
    """Give a run the outputs of another (a cache hit shares the files of the run it reuses)."""
    columns = (_outputs.c.path, _outputs.c.size, _outputs.c.sha256, _outputs.c.uri)
    rows = select(literal(target_run_id), *columns).where(_outputs.c.run_id == source_run_id)
    session.execute(insert(_outputs).from_select(["run_id", *(c.name for c in columns)], rows))


def outputs_of(session: Session, run_id: int) -> list[OutputRow]:
    return list(session.scalars(select(OutputRow).where(OutputRow.run_id == run_id).order_by(OutputRow.path)))


# --- events -------------------------------------------------------------------------------------


def add_event(session: Session, run_id: int | None, type_: str, data: dict[str, Any], at: dt.datetime) -> None:
    session.execute(insert(_events).values(run_id=run_id, type=type_, data=data, created_at=at))


def events_of(session: Session, run_id: int, after_id: int, limit: int) -> list[EventRow]:
    statement = (
        select(EventRow).where(EventRow.run_id == run_id, EventRow.id > after_id).order_by(EventRow.id).limit(limit)
    )
    return list(session.scalars(statement))
