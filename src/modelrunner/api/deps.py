"""What a route gets from the running app: the platform, and the caller with their permissions.

A route that acts on one run names the level it needs in its signature (``RunViewer``,
``RunRunner``, ``RunCanceller``); the read that fetches the run checks it, in its own transaction
(engine/run_reads.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from modelrunner.auth.access import Access
from modelrunner.auth.attempt_tokens import authenticate_attempt
from modelrunner.auth.principal import ANONYMOUS, Principal
from modelrunner.auth.run_access import RunPermission
from modelrunner.errors import SpecError
from modelrunner.platform import Platform
from modelrunner.spec.access_spec import AccessSpec, Level
from modelrunner.store.row_ids import RowId

_BEARER = HTTPBearer(
    auto_error=False,
    description="An API token (`modelrunner tokens create --user NAME`). Without one, the workspace's "
    "`access.anonymous` grants apply.",
)


_CALLBACK = HTTPBearer(
    auto_error=False,
    scheme_name="AttemptCallbackToken",
    description="The attempt's own callback token (MODELRUNNER_CALLBACK_TOKEN); valid while the attempt runs",
)


# Dependencies that do not wait on the store are coroutines: FastAPI runs every plain function
# dependency in a worker thread, and each such hop costs more CPU than a cached token check.


async def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(_platform)]


async def _access(
    platform: PlatformDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]
) -> Access:
    if credentials is None:
        return access_of(platform, ANONYMOUS)
    tokens, token = platform.verified_tokens, credentials.credentials
    # A token verified moments ago is answered from memory; else the store is asked in a thread.
    principal = tokens.remembered(token)
    if principal is None:
        principal = await run_in_threadpool(tokens.principal, token)
    return access_of(platform, principal)


def access_of(platform: Platform, principal: Principal) -> Access:
    """What ``principal`` may do under the workspace's ``access:`` grants (API and web pages alike)."""
    try:
        spec = platform.workspace.spec().access
    except SpecError:
        if not principal.is_admin:
            raise  # a broken modelrunner.yaml grants nothing; a site admin can still look around
        spec = AccessSpec()
    return Access(principal, spec)


AccessDep = Annotated[Access, Depends(_access)]


def _run_permission(level: Level) -> Callable[[RowId, Access], Awaitable[RunPermission]]:
    async def permission(run_id: RowId, access: AccessDep) -> RunPermission:
        return RunPermission(run_id, access, level)

    return permission


RunViewer = Annotated[RunPermission, Depends(_run_permission(Level.VIEW))]
"""The run of the path, to be read by a caller with ``view`` on its model."""
RunRunner = Annotated[RunPermission, Depends(_run_permission(Level.RUN))]
"""The run of the path, to be computed again by a caller with ``run`` on its model."""
RunCanceller = Annotated[RunPermission, Depends(_run_permission(Level.RUN))]
"""The run of the path, to be cancelled: ``run`` on its model for one's own runs, ``admin`` for
anyone's (``run_reads.run_to_cancel`` applies the rule)."""


@dataclass(frozen=True)
class CallingAttempt:
    """The attempt of the path, which the request's callback token proved to be."""

    id: int
    run_id: int
    number: int


def _authenticated_attempt(
    attempt_id: RowId,
    platform: PlatformDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_CALLBACK)],
) -> CallingAttempt:
    """The attempt of the path, once the request carries its live callback token (checked
    before the body is read)."""
    with platform.database.read() as session:
        row = authenticate_attempt(session, attempt_id, credentials.credentials if credentials else None)
        return CallingAttempt(row.id, row.run_id, row.number)


AuthenticatedAttempt = Annotated[CallingAttempt, Depends(_authenticated_attempt)]
