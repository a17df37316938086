"""Accounts: users, groups and their API tokens, and turning a bearer token into a Principal.

Every function takes the caller's session, so a command or a route decides the transaction.
Secrets leave this module once, in the return value of ``create_token``; errors never show them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import event
from sqlalchemy.orm import Session

from modelrunner.auth import secrets, web_sessions
from modelrunner.auth.principal import Principal
from modelrunner.clock import utcnow
from modelrunner.errors import AlreadyExists, Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from modelrunner.spec.names import check_name
from modelrunner.store import account_queries
from modelrunner.store.tables import ApiTokenRow, GroupMemberRow, GroupRow, UserRow

FIRST_ADMIN = "admin"
CREATE_TOKEN = "`modelrunner tokens create --user NAME` on the server's machine"
_EMAIL_LENGTH = 254  # as the users table holds it
_LABEL_LENGTH = 120  # as the api_tokens table holds it


_generation = 0  # see tokens_generation


@dataclass(frozen=True)
class NewToken:
    """A token just created: ``token`` is shown to the user once and never stored."""

    row: ApiTokenRow
    token: str


@dataclass(frozen=True)
class UserOverview:
    """A user as an administrator lists them; never a password hash."""

    name: str
    email: str | None
    is_admin: bool
    disabled: bool
    has_password: bool
    groups: tuple[str, ...]
    active_tokens: int  # neither revoked nor expired
    created_at: dt.datetime


@dataclass(frozen=True)
class GroupOverview:
    name: str
    members: tuple[str, ...]
    created_at: dt.datetime


class TokenState(StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"


@dataclass(frozen=True)
class TokenOverview:
    """A token as ``tokens list`` shows it: who owns it and whether it still works; never its secret
    or the secret's digest."""

    id: int
    user: str
    label: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    state: TokenState


@dataclass(frozen=True)
class Revoked:
    """The token after ``revoke_token``; ``now`` is False when it had been revoked before."""

    row: ApiTokenRow
    user: str  # its owner's name
    now: bool


def add_user(
    session: Session, name: str, *, email: str | None = None, password: str | None = None, is_admin: bool = False
) -> UserRow:
    """Conflict if the name is taken, InvalidInput for a bad name or e-mail address."""
    _check_name(name, "user name")
    if email is not None and ("@" not in email or any(c.isspace() for c in email) or len(email) > _EMAIL_LENGTH):
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
    except AlreadyExists as exc:  # another process added it between the check and the insert
        raise Conflict(f"a user called '{name}' exists already", user=name) from exc
    return row


def user(session: Session, name: str) -> UserRow:
    """NotFound (naming the command that adds users) for an unknown name."""
    found = account_queries.user_by_name(session, name)
    if found is None:
        raise NotFound(f"unknown user '{name}' (add it with `modelrunner users add {name}`)", user=name)
    return found


def list_users(session: Session) -> list[UserOverview]:
    """Every user by name, with their groups and how many of their tokens still work."""
    groups = account_queries.groups_by_user(session)
    active = account_queries.active_token_counts(session, utcnow())
    return [
        UserOverview(
            name=row.name,
            email=row.email,
            is_admin=row.is_admin,
            disabled=row.disabled,
            has_password=row.password_hash is not None,
            groups=tuple(groups.get(row.id, ())),
            active_tokens=active.get(row.id, 0),
            created_at=row.created_at,
        )
        for row in account_queries.users(session)
    ]


def set_disabled(session: Session, name: str, disabled: bool) -> UserRow:
    """Disable (or enable again) a user: a disabled user's tokens and password stop working, and
    their web UI sessions end (enabling them again does not bring those back)."""
    row = user(session, name)
    account_queries.set_disabled(session, row.id, disabled)
    _tokens_change_meaning(session)
    if disabled:
        web_sessions.end_all(session, row.id)
    session.refresh(row)
    return row


def set_password(session: Session, name: str, password: str) -> UserRow:
    """Give a user a new password for the web UI's sign-in (an argon2id hash replaces any old one).

    Every web UI session of the user ends: whoever signed in with the old password (or holds a
    copy of such a cookie) must sign in again. NotFound for an unknown name, InvalidInput for an
    empty password; the user's tokens, groups and disabled state are left as they were."""
    if not password:
        raise InvalidInput("a password cannot be empty", field="password")
    row = user(session, name)
    account_queries.set_password_hash(session, row.id, secrets.hash_password(password))
    web_sessions.end_all(session, row.id)
    session.refresh(row)
    return row


def sign_out_everywhere(session: Session, name: str) -> int:
    """End every web UI session of the user (API tokens are revoked one by one, with
    ``revoke_token``); how many sessions ended. NotFound for an unknown name."""
    return web_sessions.end_all(session, user(session, name).id)


def ensure_first_admin(session: Session) -> bool:
    """Create the site admin ``admin`` on a store without users; whether it was created now."""
    if account_queries.count_users(session) > 0:
        return False
    try:
        add_user(session, FIRST_ADMIN, is_admin=True)
    except Conflict:
        return False  # another server created it at the same moment
    return True


def lacks_password(session: Session, name: str) -> bool:
    """Whether user ``name`` exists, is enabled and has no password to sign in to the web UI with."""
    user = account_queries.user_by_name(session, name)
    return user is not None and not user.disabled and user.password_hash is None


def add_group(session: Session, name: str) -> GroupRow:
    _check_name(name, "group name")
    if account_queries.group_by_name(session, name) is not None:
        raise Conflict(f"a group called '{name}' exists already", group=name)
    row = GroupRow(name=name, created_at=utcnow())
    try:
        with session.begin_nested():
            account_queries.add(session, row)
    except AlreadyExists as exc:
        raise Conflict(f"a group called '{name}' exists already", group=name) from exc
    return row


def group(session: Session, name: str) -> GroupRow:
    found = account_queries.group_by_name(session, name)
    if found is None:
        raise NotFound(f"unknown group '{name}' (create it with `modelrunner groups add {name}`)", group=name)
    return found


def list_groups(session: Session) -> list[GroupOverview]:
    """Every group by name with its members' names."""
    members = account_queries.members_by_group(session)
    return [
        GroupOverview(row.name, tuple(members.get(row.id, ())), row.created_at)
        for row in account_queries.groups(session)
    ]


def add_member(session: Session, group_name: str, user_name: str) -> bool:
    """Put the user in the group; False if they were in it already."""
    found_group, found_user = group(session, group_name), user(session, user_name)
    if account_queries.is_member(session, found_group.id, found_user.id):
        return False
    try:
        with session.begin_nested():
            account_queries.add(session, GroupMemberRow(group_id=found_group.id, user_id=found_user.id))
    except AlreadyExists:
        return False
    _tokens_change_meaning(session)
    return True


def remove_member(session: Session, group_name: str, user_name: str) -> bool:
    """Take the user out of the group; False if they were not in it."""
    _tokens_change_meaning(session)
    return account_queries.remove_member(session, group(session, group_name).id, user(session, user_name).id)


def create_token(session: Session, user_name: str, *, expires_in: float | None = None, label: str = "") -> NewToken:
    """A new API token for the user; only its digest is stored."""
    owner = user(session, user_name)
    if owner.disabled:
        raise Conflict(
            f"user '{user_name}' is disabled; enable them first with `modelrunner users enable {user_name}`",
            user=user_name,
        )
    if expires_in is not None and expires_in <= 0:
        raise InvalidInput("expires must be a positive duration", field="expires")
    if len(label) > _LABEL_LENGTH:
        raise InvalidInput(f"a token's label holds at most {_LABEL_LENGTH} characters", field="label")
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


def revoke_token(session: Session, token_id: int) -> Revoked:
    """Revoke a token by its id (as ``tokens list`` shows it); idempotent."""
    row = account_queries.token(session, token_id)
    if row is None:
        raise NotFound(f"unknown token {token_id} (`modelrunner tokens list` shows them)", token=token_id)
    now = account_queries.revoke_token_if_active(session, token_id, utcnow())
    _tokens_change_meaning(session)
    session.refresh(row)
    return Revoked(row, _names(session, {row.user_id}).get(row.user_id, str(row.user_id)), now)


def list_tokens(session: Session, user_name: str | None = None) -> list[TokenOverview]:
    """The tokens of one user (of everyone with None), oldest first; NotFound for an unknown user."""
    owner = user(session, user_name) if user_name is not None else None
    rows = account_queries.tokens_of(session, owner.id if owner else None)
    names = {owner.id: owner.name} if owner else _names(session, {row.user_id for row in rows})
    now = utcnow()
    return [
        TokenOverview(
            id=row.id,
            user=names.get(row.user_id, str(row.user_id)),
            label=row.label,
            created_at=row.created_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            state=_token_state(row, now),
        )
        for row in rows
    ]


def authenticate(session: Session, token: str) -> Principal:
    """The user a bearer token belongs to. Unauthenticated for an unknown, expired or revoked
    token or a disabled user; Forbidden for an attempt's callback token (it reports progress only)."""
    return authenticate_until(session, token)[0]


def authenticate_until(session: Session, token: str) -> tuple[Principal, dt.datetime | None]:
    """As ``authenticate``, with the moment the token expires (None: never)."""
    presented = secrets.parse(token)
    if presented is not None and presented.kind == secrets.ATTEMPT_TOKEN:
        raise Forbidden("an attempt's callback token can report that attempt's progress and nothing else")
    row = account_queries.token(session, presented.row_id) if presented is not None else None
    if presented is None or row is None or not secrets.matches(presented.secret, row.secret_hash):
        raise Unauthenticated(f"unknown token: check MODELRUNNER_TOKEN, or create a token with {CREATE_TOKEN}")
    if row.revoked_at is not None:
        raise Unauthenticated(f"token {row.id} was revoked; create a new one with {CREATE_TOKEN}")
    if row.expires_at is not None and row.expires_at <= utcnow():
        expired = f"{row.expires_at:%Y-%m-%d %H:%M:%S} UTC"
        raise Unauthenticated(f"token {row.id} expired at {expired}; create a new one with {CREATE_TOKEN}")
    owner = account_queries.user_by_id(session, row.user_id)
    if owner is None or owner.disabled:
        shown = owner.name if owner else row.user_id
        raise Unauthenticated(f"user '{shown}' is disabled (a site admin can run `modelrunner users enable {shown}`)")
    return principal_of(session, owner), row.expires_at


def sign_in(session: Session, name: str, password: str) -> Principal:
    """The user whose name and password these are (the web UI's sign-in); Unauthenticated with
    the same message for an unknown name and a wrong password."""
    found = account_queries.user_by_name(session, name)
    matches = secrets.password_matches(password, found.password_hash if found is not None else None)
    if found is None or found.disabled or not matches:
        raise Unauthenticated("unknown user name or wrong password")
    return principal_of(session, found)


def tokens_generation() -> int:
    """Grows whenever a change committed by this process may change whom a token stands for
    (a revocation, a user disabled, a group membership): verdicts of ``VerifiedTokens`` from an
    earlier generation are not trusted."""
    return _generation


def _tokens_change_meaning(session: Session) -> None:
    event.listen(session, "after_commit", _next_generation, once=True)


def _next_generation(_session: Session) -> None:
    global _generation
    _generation += 1


def principal_of(session: Session, row: UserRow) -> Principal:
    return Principal(row.id, row.name, frozenset(account_queries.group_names_of(session, row.id)), row.is_admin)


def _names(session: Session, user_ids: set[int]) -> dict[int, str]:
    return {user_id: row.name for user_id, row in account_queries.users_by_id(session, user_ids).items()}


def _token_state(row: ApiTokenRow, now: dt.datetime) -> TokenState:
    if row.revoked_at is not None:
        return TokenState.REVOKED
    if row.expires_at is not None and row.expires_at <= now:
        return TokenState.EXPIRED
    return TokenState.ACTIVE


def _check_name(name: str, what: str) -> None:
    try:
        check_name(name)
    except ValueError as exc:
        raise InvalidInput(f"{what} '{name}': {exc}", field="name") from exc
