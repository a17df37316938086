"""The queries of accounts: users, groups, memberships and API tokens. Callers pass the session."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from modelrunner.store.tables import ApiTokenRow, GroupMemberRow, GroupRow, UserRow

_LARGEST_ID = 2**63 - 1  # BIGINT on PostgreSQL, INTEGER on SQLite


def user_by_name(session: Session, name: str) -> UserRow | None:
    return session.scalars(select(UserRow).where(UserRow.name == name)).first()


def user_by_id(session: Session, user_id: int) -> UserRow | None:
    return session.get(UserRow, user_id)


def users(session: Session) -> list[UserRow]:
    return list(session.scalars(select(UserRow).order_by(UserRow.name)))


def users_by_id(session: Session, user_ids: Collection[int]) -> dict[int, UserRow]:
    if not user_ids:
        return {}
    return {row.id: row for row in session.scalars(select(UserRow).where(UserRow.id.in_(user_ids)))}


def count_users(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(UserRow)) or 0)


def add(session: Session, row: UserRow | GroupRow | GroupMemberRow | ApiTokenRow) -> None:
    """Insert ``row`` (it gets its id); AlreadyExists if its name or membership exists already."""
    session.add(row)
    session.flush()


def set_disabled(session: Session, user_id: int, disabled: bool) -> None:
    session.execute(update(UserRow).where(UserRow.id == user_id).values(disabled=disabled))


def set_password_hash(session: Session, user_id: int, password_hash: str) -> None:
    session.execute(update(UserRow).where(UserRow.id == user_id).values(password_hash=password_hash))


def group_by_name(session: Session, name: str) -> GroupRow | None:
    return session.scalars(select(GroupRow).where(GroupRow.name == name)).first()


def groups(session: Session) -> list[GroupRow]:
    return list(session.scalars(select(GroupRow).order_by(GroupRow.name)))


def is_member(session: Session, group_id: int, user_id: int) -> bool:
    return session.get(GroupMemberRow, (group_id, user_id)) is not None


def remove_member(session: Session, group_id: int, user_id: int) -> bool:
    row = session.get(GroupMemberRow, (group_id, user_id))
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True


def group_names_of(session: Session, user_id: int) -> list[str]:
    statement = (
        select(GroupRow.name)
        .join(GroupMemberRow, GroupMemberRow.group_id == GroupRow.id)
        .where(GroupMemberRow.user_id == user_id)
        .order_by(GroupRow.name)
    )
    return list(session.scalars(statement))


def members_by_group(session: Session) -> dict[int, list[str]]:
    """The user names of every group's members, by group id."""
    statement = (
        select(GroupMemberRow.group_id, UserRow.name)
        .join(UserRow, UserRow.id == GroupMemberRow.user_id)
        .order_by(UserRow.name)
    )
    found: dict[int, list[str]] = {}
    for group_id, name in session.execute(statement):
        found.setdefault(group_id, []).append(name)
    return found


def groups_by_user(session: Session) -> dict[int, list[str]]:
    """The group names of every user, by user id."""
    statement = (
        select(GroupMemberRow.user_id, GroupRow.name)
        .join(GroupRow, GroupRow.id == GroupMemberRow.group_id)
        .order_by(GroupRow.name)
    )
    found: dict[int, list[str]] = {}
    for user_id, name in session.execute(statement):
        found.setdefault(user_id, []).append(name)
    return found


def token(session: Session, token_id: int) -> ApiTokenRow | None:
    """The token row, or None; also None for an id no row can have (a forged token's number may
    not fit the column, which PostgreSQL and SQLite would refuse with an error)."""
    if not 0 < token_id <= _LARGEST_ID:
        return None
    return session.get(ApiTokenRow, token_id)


def tokens_of(session: Session, user_id: int | None) -> list[ApiTokenRow]:
    """The tokens of one user (every user's with None), oldest first."""
    statement = select(ApiTokenRow).order_by(ApiTokenRow.id)
    if user_id is not None:
        statement = statement.where(ApiTokenRow.user_id == user_id)
    return list(session.scalars(statement))


def active_token_counts(session: Session, now: dt.datetime) -> dict[int, int]:
    """How many tokens of each user are neither revoked nor expired at ``now``, by user id."""
    statement = (
        select(ApiTokenRow.user_id, func.count())
        .where(
            ApiTokenRow.revoked_at.is_(None),
            or_(ApiTokenRow.expires_at.is_(None), ApiTokenRow.expires_at > now),
        )
        .group_by(ApiTokenRow.user_id)
    )
    return {user_id: int(count) for user_id, count in session.execute(statement)}


def revoke_token_if_active(session: Session, token_id: int, at: dt.datetime) -> bool:
    """Revoke the token unless it was revoked already; whether this call revoked it."""
    statement = (
        update(ApiTokenRow).where(ApiTokenRow.id == token_id, ApiTokenRow.revoked_at.is_(None)).values(revoked_at=at)
    )
    return bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]
