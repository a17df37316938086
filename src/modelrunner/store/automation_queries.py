"""The queries of schedules and triggers: where each rule stands, its firings, and the events
triggers read. Callers pass the session (the transaction). Every state change is a
compare-and-set, so two servers on one database never both act on the same tick or event."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.orm import Session

from modelrunner.errors import ChangedMeanwhile
from modelrunner.store.prepared import PreparedStatement
from modelrunner.store.tables import EventRow, FiringRow, ScheduleStateRow, TriggerCursorRow

_events: Table = EventRow.__table__  # type: ignore[assignment]

# --- schedule states ----------------------------------------------------------------------------


def schedule_states(session: Session) -> dict[str, ScheduleStateRow]:
    """Every schedule's state, by schedule name (schedules are few)."""
    return {row.name: row for row in session.scalars(select(ScheduleStateRow))}


def add_schedule_state(session: Session, row: ScheduleStateRow) -> None:
    """Insert the state of a schedule seen for the first time; AlreadyExists if another server
    inserted it first."""
    session.add(row)
    session.flush()


def move_schedule(
    session: Session, name: str, *, next_fire_at: dt.datetime, signature: str, values: dict[str, Any]
) -> None:
    """Compare-and-set: change the state only while it still waits for ``next_fire_at`` under
    ``signature``; ChangedMeanwhile if another server (or an edit of the spec) moved it first."""
    statement = (
        update(ScheduleStateRow)
        .where(
            ScheduleStateRow.name == name,
            ScheduleStateRow.next_fire_at == next_fire_at,
            ScheduleStateRow.cron == signature,
        )
        .values(**values)
    )
    if not session.execute(statement).rowcount:  # type: ignore[attr-defined]
        raise ChangedMeanwhile(f"schedule {name} moved past {next_fire_at.isoformat()} meanwhile")


def resign_schedule_if(session: Session, name: str, *, signature: str, values: dict[str, Any]) -> bool:
    """Compare-and-set on the signature alone: the spec changed, the next tick is computed again."""
    statement = (
        update(ScheduleStateRow)
        .where(ScheduleStateRow.name == name, ScheduleStateRow.cron == signature)
        .values(**values)
    )
    return bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]


# --- trigger cursors ----------------------------------------------------------------------------


def trigger_cursors(session: Session) -> dict[str, TriggerCursorRow]:
    """Every trigger's cursor, by trigger name."""
    return {row.name: row for row in session.scalars(select(TriggerCursorRow))}


def add_trigger_cursor(session: Session, row: TriggerCursorRow) -> None:
    """Insert the cursor of a trigger seen for the first time; AlreadyExists if another server
    inserted it first."""
    session.add(row)
    session.flush()


def move_cursor(session: Session, name: str, *, from_id: int, to_id: int, at: dt.datetime) -> None:
    """Compare-and-set: move the cursor from ``from_id`` to ``to_id``; ChangedMeanwhile if it is
    elsewhere (another server moved it first)."""
    statement = (
        update(TriggerCursorRow)
        .where(TriggerCursorRow.name == name, TriggerCursorRow.last_event_id == from_id)
        .values(last_event_id=to_id, updated_at=at)
    )
    if not session.execute(statement).rowcount:  # type: ignore[attr-defined]
        raise ChangedMeanwhile(f"cursor {name} moved from event {from_id} meanwhile")


# --- firings ------------------------------------------------------------------------------------


def add_firing(session: Session, row: FiringRow) -> FiringRow:
    """Insert the firing; AlreadyExists if the rule already fired for this cause."""
    session.add(row)
    session.flush()
    return row


def get_firing(session: Session, firing_id: int) -> FiringRow | None:
    return session.get(FiringRow, firing_id)


def lock_firing_in(session: Session, firing_id: int, status: str) -> bool:
    """Lock the firing's row for this transaction if its status is ``status``; whether it is. On
    PostgreSQL a second transaction waits here for the first to end, then sees the status that
    one left (SQLite's BEGIN IMMEDIATE already serialises writers)."""
    statement = select(FiringRow.id).where(FiringRow.id == firing_id, FiringRow.status == status).with_for_update()
    return session.execute(statement).first() is not None


def set_firing_if(session: Session, firing_id: int, statuses: Collection[str], values: dict[str, Any]) -> bool:
    """Compare-and-set: change the firing only while its status is one of ``statuses``."""
    statement = (
        update(FiringRow).where(FiringRow.id == firing_id, FiringRow.status.in_(list(statuses))).values(**values)
    )
    return bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]


def firings_of(session: Session, rule: str, limit: int) -> list[FiringRow]:
    """The rule's firings, newest first."""
    statement = select(FiringRow).where(FiringRow.rule == rule).order_by(FiringRow.id.desc()).limit(limit)
    return list(session.scalars(statement))


def newest_firing(
    session: Session, rule: str, statuses: Collection[str], before_id: int | None = None
) -> FiringRow | None:
    """The rule's newest firing in one of ``statuses`` (older than ``before_id`` if given)."""
    statement = select(FiringRow).where(FiringRow.rule == rule, FiringRow.status.in_(list(statuses)))
    if before_id is not None:
        statement = statement.where(FiringRow.id < before_id)
    return session.scalars(statement.order_by(FiringRow.id.desc()).limit(1)).first()


def last_firings(session: Session, rules: Collection[str]) -> dict[str, FiringRow]:
    """The newest firing of each of ``rules`` that has one."""
    if not rules:
        return {}
    newest = select(func.max(FiringRow.id)).where(FiringRow.rule.in_(list(rules))).group_by(FiringRow.rule)
    return {row.rule: row for row in session.scalars(select(FiringRow).where(FiringRow.id.in_(newest)))}


def firings_in(session: Session, status: str, limit: int) -> list[FiringRow]:
    """The oldest firings in ``status`` (waiting firings are few: at most one per schedule)."""
    statement = select(FiringRow).where(FiringRow.status == status).order_by(FiringRow.id).limit(limit)
    return list(session.scalars(statement))


# --- events -------------------------------------------------------------------------------------


def newest_event_id(session: Session, type_: str) -> int:
    """The id of the newest event of ``type_``; 0 if there is none."""
    return int(session.scalar(select(func.max(EventRow.id)).where(EventRow.type == type_)) or 0)


@dataclass(frozen=True)
class Event:
    """An event as the loops that follow events read it (no ORM object: they read thousands)."""

    id: int
    run_id: int | None
    type: str
    data: dict[str, Any]
    created_at: dt.datetime


_EVENTS_AFTER = PreparedStatement(
    select(_events.c.id, _events.c.run_id, _events.c.type, _events.c.data, _events.c.created_at)
    .where(_events.c.type == bindparam("type"), _events.c.id > bindparam("after_id"))
    .order_by(_events.c.id)
    .limit(bindparam("limit"))
)


def events_after(session: Session, type_: str, after_id: int, limit: int) -> list[Event]:
    """Events of ``type_`` with an id above ``after_id``, oldest first (the (type, id) index)."""
    return [Event(*row) for row in _EVENTS_AFTER.rows(session, {"type": type_, "after_id": after_id, "limit": limit})]
