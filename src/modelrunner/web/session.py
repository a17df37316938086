"""Who is looking at a page: the session cookie, signing in and out, and CSRF tokens.

The cookie (Starlette's SessionMiddleware, signed with itsdangerous; HttpOnly, SameSite=Lax, and
Secure over HTTPS) holds the secret of a server-side session (auth/web_sessions.py), the
session's CSRF token and a one-time message, nothing else. Who is signed in is decided by the
database on every request, so signing out, a new password, disabling the user or a site admin's
"sign out everywhere" end the session for every copy of the cookie. ``page_access`` is the one
place a page request becomes an ``Access``.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import FormData
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from modelrunner.api import API_PREFIX
from modelrunner.api.deps import access_of
from modelrunner.auth import accounts, web_sessions
from modelrunner.auth.access import Access
from modelrunner.auth.principal import ANONYMOUS, Principal
from modelrunner.auth.run_access import RunPermission
from modelrunner.errors import Forbidden
from modelrunner.platform import Platform
from modelrunner.settings import Settings
from modelrunner.spec.access_spec import Level
from modelrunner.spec.workspace import Model, unknown_model
from modelrunner.store.row_ids import RowId

SESSION_COOKIE = "modelrunner_session"
KEY_FILE = "session.key"
_SESSION = "sid"  # the server-side session's secret
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


class SessionCookies:
    """Starlette's SessionMiddleware, for the pages (not the API), with the cookie marked Secure
    on requests that came over HTTPS (the scheme uvicorn saw, a trusted proxy's X-Forwarded-Proto
    included), or on every request when ``session_cookie_secure`` is set. It lives as long as a
    session may."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        common = {
            "secret_key": session_secret(settings),
            "session_cookie": SESSION_COOKIE,
            "max_age": int(settings.session_max_age_seconds),
            "same_site": "lax",
        }
        self._app = app
        self._secure = SessionMiddleware(app, https_only=True, **common)  # type: ignore[arg-type]
        self._any = self._secure if settings.session_cookie_secure else SessionMiddleware(app, **common)  # type: ignore[arg-type]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("path", "").startswith(API_PREFIX):
            # The API reads bearer tokens only: no cookie to parse, sign or set on its requests.
            await self._app(scope, receive, send)
            return
        secure = scope.get("scheme") in ("https", "wss")
        await (self._secure if secure else self._any)(scope, receive, send)


def platform_of(request: Request) -> Platform:
    """The platform the app serves (every page's way to it)."""
    platform: Platform = request.app.state.platform
    return platform


def page_principal(request: Request) -> Principal:
    """The signed-in user of this request, or ANONYMOUS; read from the database once a request.
    A session that ended (signed out elsewhere, idle, too old, its user disabled) is dropped
    from the cookie here."""
    known = getattr(request.state, "principal", None)
    if isinstance(known, Principal):
        return known
    secret = request.session.get(_SESSION)
    principal = ANONYMOUS
    if isinstance(secret, str):
        platform = platform_of(request)
        with platform.database.read() as session:
            found = web_sessions.find(session, secret, web_sessions.SessionLimits.of(platform.settings))
            if found is not None:
                principal = accounts.principal_of(session, found.user)
        if found is None:
            request.session.pop(_SESSION, None)
        elif found.touch_due:
            with platform.database.write() as session:
                web_sessions.touch(session, found)
    request.state.principal = principal
    return principal


def page_access(request: Request) -> Access:
    """What the caller of this page may do; the same grants and checks as the API."""
    return access_of(platform_of(request), page_principal(request))


PageAccess = Annotated[Access, Depends(page_access)]


def _page_run_viewer(run_id: RowId, access: PageAccess) -> RunPermission:
    return RunPermission(run_id, access, Level.VIEW)


def _page_run_canceller(run_id: RowId, access: PageAccess) -> RunPermission:
    return RunPermission(run_id, access, Level.RUN)


PageRunViewer = Annotated[RunPermission, Depends(_page_run_viewer)]
"""The run of the page's path, to be shown to a caller with ``view`` on its model (checked by the
read, as the API's ``RunViewer``); a run the caller may not view is an unknown run here."""
PageRunCanceller = Annotated[RunPermission, Depends(_page_run_canceller)]
"""The run of the page's path, to be cancelled: the API's ``RunCanceller`` (403 to a viewer who
may not cancel it; an unknown run to one who may not view it)."""


def viewed_model(platform: Platform, access: Access, name: str) -> Model:
    """The model ``name``, for a page shown to a caller who may view it. A model the caller may
    not view is answered exactly as an unknown one (404, the same page), so that no page tells
    whether it exists; an anonymous caller is asked to sign in for either."""
    if not access.may(name, Level.VIEW):
        access.require_signed_in("viewing a model")
        raise unknown_model(name)
    return platform.workspace.model(name)


def sign_in(request: Request, name: str, password: str) -> Principal:
    """Check the password (Unauthenticated if wrong) and start a new session for the user: the old
    session's content, CSRF token included, is dropped, so a planted cookie gains nothing."""
    platform = platform_of(request)
    with platform.database.read() as session:
        principal = accounts.sign_in(session, name, password)
    assert principal.user_id is not None  # a signed-in principal is a user
    with platform.database.write() as session:
        secret = web_sessions.start(session, principal.user_id, web_sessions.SessionLimits.of(platform.settings))
    request.session.clear()
    request.session[_SESSION] = secret
    request.state.principal = principal
    csrf_token(request)
    return principal


def sign_out(request: Request) -> None:
    """End this browser's session in the database (every copy of its cookie stops working)."""
    secret = request.session.get(_SESSION)
    if isinstance(secret, str):
        with platform_of(request).database.write() as session:
            web_sessions.end(session, secret)
    request.session.clear()
    request.state.principal = ANONYMOUS


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
