"""Accounts: users, groups and their API tokens, and turning a bearer token into a Principal.

Every function takes the caller's session, so a command or a route decides the transaction.
Secrets leave this module once, in the return value of ``create_token``; errors never show them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelrunner.auth import secrets
from modelrunner.auth.principal import Principal
from modelrunner.clock import utcnow
from modelrunner.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from modelrunner.spec.names import check_name
from modelrunner.store import account_queries
from modelrunner.store.tables import ApiTokenRow, GroupMemberRow, GroupRow, UserRow

FIRST_ADMIN = "admin"


@dataclass(frozen=True)
class NewToken:
    """A token just created: ``token`` is shown to the user once and never stored."""

    row: ApiTokenRow
    token: str


def add_user(
    session: Session, name: str, *, email: str | None = None, password: str | None = None, is_admin: bool = False
) -> UserRow:
    """Conflict if the name is taken, InvalidInput for a bad name or e-mail address."""
    _check_name(name, "user name")
    if email is not None and ("@" not in email or any(c.isspace() for c in email)):
        raise InvalidInput(f"'{email}' is not an e-mail address", field="email")
    if account_queries.user_by_name(session, name) is not None:
        raise Conflict(f"a user called '{name}' exists already", user=name)
    row = UserRow(
        name=name,
        email=email,
        password_hash=secrets.hash_password(password) if password else None,
        is_admin=is_admin,
        disabled=False,
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            account_queries.add(session, row)
    except IntegrityError as exc:  # another process added it between the check and the insert
        raise Conflict(f"a user called '{name}' exists already", user=name) from exc
    return row


def user(session: Session, name: str) -> UserRow:
    found = account_queries.user_by_name(session, name)
    if found is None:
        raise NotFound(f"unknown user '{name}'", user=name)
    return found


def set_disabled(session: Session, name: str, disabled: bool) -> UserRow:
    """Disable (or enable again) a user: a disabled user's tokens and password stop working."""
    row = user(session, name)
    account_queries.set_disabled(session, row.id, disabled)
    session.refresh(row)
    return row


def ensure_first_admin(session: Session) -> bool:
    """Create the site admin ``admin`` on a store without users; whether it was created now."""
    if account_queries.count_users(session) > 0:
        return False
    try:
        add_user(session, FIRST_ADMIN, is_admin=True)
    except Conflict:
        return False  # another server created it at the same moment
    return True


def add_group(session: Session, name: str) -> GroupRow:
    _check_name(name, "group name")
    if account_queries.group_by_name(session, name) is not None:
        raise Conflict(f"a group called '{name}' exists already", group=name)
    row = GroupRow(name=name, created_at=utcnow())
    try:
        with session.begin_nested():
            account_queries.add(session, row)
    except IntegrityError as exc:
        raise Conflict(f"a group called '{name}' exists already", group=name) from exc
    return row


def group(session: Session, name: str) -> GroupRow:
    found = account_queries.group_by_name(session, name)
    if found is None:
        raise NotFound(f"unknown group '{name}' (create it with `modelrunner groups add {name}`)", group=name)
    return found


def add_member(session: Session, group_name: str, user_name: str) -> bool:
    """Put the user in the group; False if they were in it already."""
    found_group, found_user = group(session, group_name), user(session, user_name)
    if account_queries.is_member(session, found_group.id, found_user.id):
        return False
    try:
        with session.begin_nested():
            account_queries.add(session, GroupMemberRow(group_id=found_group.id, user_id=found_user.id))
    except IntegrityError:
        return False
    return True


def remove_member(session: Session, group_name: str, user_name: str) -> bool:
    """Take the user out of the group; False if they were not in it."""
    return account_queries.remove_member(session, group(session, group_name).id, user(session, user_name).id)


def create_token(session: Session, user_name: str, *, expires_in: float | None = None, label: str = "") -> NewToken:
    """A new API token for the user; only its digest is stored."""
    owner = user(session, user_name)
    if owner.disabled:
        raise Conflict(f"user '{user_name}' is disabled; enable them first", user=user_name)
    if expires_in is not None and expires_in <= 0:
        raise InvalidInput("expires must be a positive duration", field="expires")
    minted, now = secrets.mint(), utcnow()
    row = ApiTokenRow(
        user_id=owner.id,
        label=label,
        secret_hash=minted.digest,
        created_at=now,
        expires_at=now + dt.timedelta(seconds=expires_in) if expires_in is not None else None,
        revoked_at=None,
    )
    account_queries.add(session, row)
    return NewToken(row, secrets.compose(secrets.USER_TOKEN, row.id, minted.secret))


def revoke_token(session: Session, token_id: int) -> ApiTokenRow:
    """Revoke a token by its id (as ``tokens list`` shows it); idempotent."""
    row = account_queries.token(session, token_id)
    if row is None:
        raise NotFound(f"unknown token {token_id}", token=token_id)
    account_queries.revoke_token_if_active(session, token_id, utcnow())
    session.refresh(row)
    return row


def authenticate(session: Session, token: str) -> Principal:
    """The user a bearer token belongs to. Unauthenticated for an unknown, expired or revoked
    token or a disabled user; Forbidden for an attempt's callback token (it reports progress only)."""
    presented = secrets.parse(token)
    if presented is not None and presented.kind == secrets.ATTEMPT_TOKEN:
        raise Forbidden("an attempt's callback token can report that attempt's progress and nothing else")
    row = account_queries.token(session, presented.row_id) if presented is not None else None
    if presented is None or row is None or not secrets.matches(presented.secret, row.secret_hash):
        raise Unauthenticated("unknown token: check MODELRUNNER_TOKEN, or create one with `modelrunner tokens create`")
    if row.revoked_at is not None:
        raise Unauthenticated(f"token {row.id} was revoked; create a new one with `modelrunner tokens create`")
    if row.expires_at is not None and row.expires_at <= utcnow():
        expired = f"{row.expires_at:%Y-%m-%d %H:%M} UTC"
        raise Unauthenticated(f"token {row.id} expired at {expired}; create a new one with `modelrunner tokens create`")
    owner = account_queries.user_by_id(session, row.user_id)
    if owner is None or owner.disabled:
        raise Unauthenticated(f"user '{owner.name if owner else row.user_id}' is disabled")
    return principal_of(session, owner)


def sign_in(session: Session, name: str, password: str) -> Principal:
    """The user whose name and password these are (the web UI's sign-in); Unauthenticated with
    the same message for an unknown name and a wrong password."""
    found = account_queries.user_by_name(session, name)
    if found is None or found.disabled or not secrets.password_matches(password, found.password_hash):
        raise Unauthenticated("unknown user name or wrong password")
    return principal_of(session, found)


def principal_of(session: Session, row: UserRow) -> Principal:
    return Principal(row.id, row.name, frozenset(account_queries.group_names_of(session, row.id)), row.is_admin)


def _check_name(name: str, what: str) -> None:
    try:
        check_name(name)
    except ValueError as exc:
        raise InvalidInput(f"{what} '{name}': {exc}", field="name") from exc
