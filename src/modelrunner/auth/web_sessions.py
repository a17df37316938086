"""The web UI's sessions, kept in the database so they can be ended.

A browser that signs in gets a random secret (256 bits) in its cookie; the store keeps only its
sha256, so neither the database nor its backups sign anyone in. A session ends when its user signs
out, when it goes unused for ``idle`` or gets older than ``max_age``, and — for every session of a
user at once — when the user's password changes, the user is disabled, or a site admin signs them
out everywhere (``end_all``). An ended session's cookie, and every copy of it, signs in no one.

Every function takes the caller's session, so a page or a command decides the transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from modelrunner.auth import secrets
from modelrunner.clock import utcnow
from modelrunner.settings import Settings
from modelrunner.store import account_queries, web_session_queries
from modelrunner.store.tables import UserRow, WebSessionRow

# How stale ``last_seen_at`` may get: an idle limit is hours long, so a minute's error in it is
# nothing, and a page load then costs no write. (A quarter of a shorter idle limit, so a session in
# use never runs out.)
TOUCH_EVERY = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class SessionLimits:
    idle: dt.timedelta
    max_age: dt.timedelta

    @classmethod
    def of(cls, settings: Settings) -> SessionLimits:
        return cls(
            idle=dt.timedelta(seconds=settings.session_idle_seconds),
            max_age=dt.timedelta(seconds=settings.session_max_age_seconds),
        )


@dataclass(frozen=True)
class Found:
    """A live session and its user; ``touch_due`` when its ``last_seen_at`` should be updated."""

    session_id: int
    user: UserRow
    touch_due: bool


def start(session: Session, user_id: int, limits: SessionLimits) -> str:
    """A new session of the user; the secret for the cookie (only its digest is stored). Sessions
    of anyone that ended by themselves are removed on the way."""
    now = utcnow()
    web_session_queries.delete_ended(session, seen_before=now - limits.idle, created_before=now - limits.max_age)
    minted = secrets.mint()
    web_session_queries.add(
        session, WebSessionRow(user_id=user_id, secret_hash=minted.digest, created_at=now, last_seen_at=now)
    )
    return minted.secret


def find(session: Session, secret: str, limits: SessionLimits) -> Found | None:
    """The live session with this secret and its enabled user; None for an unknown, ended (idle,
    too old, signed out) or disabled one. Reads only: ``touch`` records the use when due."""
    row = web_session_queries.by_secret_hash(session, secrets.digest(secret))
    now = utcnow()
    if row is None or row.last_seen_at <= now - limits.idle or row.created_at <= now - limits.max_age:
        return None
    user = account_queries.user_by_id(session, row.user_id)
    if user is None or user.disabled:
        return None
    return Found(row.id, user, now - row.last_seen_at >= min(TOUCH_EVERY, limits.idle / 4))


def touch(session: Session, found: Found) -> None:
    web_session_queries.touch(session, found.session_id, utcnow())


def end(session: Session, secret: str) -> None:
    """End the session with this secret (signing out); nothing if it ended already."""
    web_session_queries.delete_by_secret_hash(session, secrets.digest(secret))


def end_all(session: Session, user_id: int) -> int:
    """End every session of the user; how many were live or not yet removed."""
    return web_session_queries.delete_of_user(session, user_id)
