"""The queries of the web UI's server-side sessions. Callers pass the session."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from modelrunner.store.tables import WebSessionRow


def add(session: Session, row: WebSessionRow) -> None:
    session.add(row)
    session.flush()


def by_secret_hash(session: Session, secret_hash: str) -> WebSessionRow | None:
    return session.scalars(select(WebSessionRow).where(WebSessionRow.secret_hash == secret_hash)).first()


def touch(session: Session, session_id: int, at: dt.datetime) -> None:
    session.execute(update(WebSessionRow).where(WebSessionRow.id == session_id).values(last_seen_at=at))


def delete_by_secret_hash(session: Session, secret_hash: str) -> int:
    return _deleted(session.execute(delete(WebSessionRow).where(WebSessionRow.secret_hash == secret_hash)))


def delete_of_user(session: Session, user_id: int) -> int:
    """End every session of the user; how many there were."""
    return _deleted(session.execute(delete(WebSessionRow).where(WebSessionRow.user_id == user_id)))


def delete_ended(session: Session, *, seen_before: dt.datetime, created_before: dt.datetime) -> int:
    """Remove the sessions that ended by themselves (idle, or past their lifetime)."""
    statement = delete(WebSessionRow).where(
        or_(WebSessionRow.last_seen_at < seen_before, WebSessionRow.created_at < created_before)
    )
    return _deleted(session.execute(statement))


def _deleted(result: object) -> int:
    return int(result.rowcount)  # type: ignore[attr-defined]
