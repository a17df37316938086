"""Users and tokens for tests, written straight to the store as `modelrunner users add` would."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from modelrunner.auth import accounts
from modelrunner.errors import Conflict
from modelrunner.store.database import Database


def add_user(
    database: Database,
    name: str,
    *,
    groups: Iterable[str] = (),
    admin: bool = False,
    email: str | None = None,
    password: str | None = None,
) -> str:
    """Create the user (and any group not there yet), put them in ``groups``; their new token."""
    with database.write() as session:
        accounts.add_user(session, name, email=email, password=password, is_admin=admin)
        for group in groups:
            with contextlib.suppress(Conflict):
                accounts.add_group(session, group)
            accounts.add_member(session, group, name)
        return accounts.create_token(session, name).token


def token_for(database: Database, name: str) -> str:
    """A new token of an existing user (``admin`` exists once the platform started)."""
    with database.write() as session:
        return accounts.create_token(session, name).token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
