"""Who is looking at a page: the signed session cookie, signing in and out, and CSRF tokens.

The cookie (Starlette's SessionMiddleware, signed with itsdangerous) holds the user's id and the
session's CSRF token, nothing else; the user is read again on every request, so disabling a user
signs them out at once. ``page_access`` is the one place a page request becomes an ``Access``.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import FormData

from modelrunner.api.deps import access_of
from modelrunner.auth import accounts
from modelrunner.auth.access import Access
from modelrunner.auth.principal import ANONYMOUS, Principal
from modelrunner.errors import Forbidden
from modelrunner.platform import Platform
from modelrunner.settings import Settings
from modelrunner.store import account_queries

SESSION_COOKIE = "modelrunner_session"
KEY_FILE = "session.key"
_USER = "uid"
_CSRF = "csrf"
CSRF_FIELD = "csrf"


def session_secret(settings: Settings) -> str:
    """The key that signs session cookies: the configured one, else the one kept in
    ``<state_dir>/session.key``, created (mode 0600) by the first server that needs it."""
    if settings.session_secret is not None:
        return settings.session_secret.get_secret_value()
    path = settings.state_dir / KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key(path)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_urlsafe(48))
    return _read_key(path)


def _read_key(path: Path) -> str:
    key = path.read_text().strip()
    if not key:  # another server is writing it this very moment
        raise RuntimeError(f"{path} is empty; delete it and start the server again")
    return key


def platform_of(request: Request) -> Platform:
    """The platform the app serves (every page's way to it)."""
    platform: Platform = request.app.state.platform
    return platform


def page_principal(request: Request) -> Principal:
    """The signed-in user of this request, or ANONYMOUS; a session of a user who was disabled or
    deleted since is ended here."""
    user_id = request.session.get(_USER)
    if not isinstance(user_id, int):
        return ANONYMOUS
    with platform_of(request).database.read() as session:
        row = account_queries.user_by_id(session, user_id)
        if row is None or row.disabled:
            request.session.pop(_USER, None)
            return ANONYMOUS
        return accounts.principal_of(session, row)


def page_access(request: Request) -> Access:
    """What the caller of this page may do; the same grants and checks as the API."""
    return access_of(platform_of(request), page_principal(request))


PageAccess = Annotated[Access, Depends(page_access)]


def sign_in(request: Request, name: str, password: str) -> Principal:
    """Check the password (Unauthenticated if wrong) and start a new session for the user: the old
    session's content, CSRF token included, is dropped, so a planted cookie gains nothing."""
    with platform_of(request).database.read() as session:
        principal = accounts.sign_in(session, name, password)
    request.session.clear()
    request.session[_USER] = principal.user_id
    csrf_token(request)
    return principal


def sign_out(request: Request) -> None:
    request.session.clear()


def csrf_token(request: Request) -> str:
    """This session's CSRF token, created on first use; every form carries it as ``csrf``."""
    token = request.session.get(_CSRF)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session[_CSRF] = token
    return token


async def checked_form(request: Request) -> FormData:
    """The submitted form, once its CSRF token is known to be this session's (Forbidden otherwise)."""
    form = await request.form()
    check_csrf(request, form.get(CSRF_FIELD))
    return form


def check_csrf(request: Request, presented: object) -> None:
    """Forbidden unless ``presented`` is this session's CSRF token."""
    expected = request.session.get(_CSRF)
    if not isinstance(expected, str) or not isinstance(presented, str) or not expected:
        raise Forbidden(_CSRF_FAILED)
    if not hmac.compare_digest(expected.encode(), presented.encode()):
        raise Forbidden(_CSRF_FAILED)


_CSRF_FAILED = (
    "this form was not sent from a page of this site, or your session changed since the page was loaded; "
    "reload the page and send the form again"
)
