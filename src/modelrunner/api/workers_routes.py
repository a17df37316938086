"""/api/v1/pools and the worker's calls about its attempts: what ``modelrunner worker`` uses.

Claiming needs a user's token (a site admin, or a member of the group ``workers``). Everything
about a claimed attempt takes that attempt's callback token, which the claim hands out and the
engine spends when the attempt ends: a worker can act only on attempts it holds, and a worker
that comes back after its attempt was declared lost is refused (401) and changes nothing.

The claim and each heartbeat renew the attempt's stored lease, the one the dispatcher reaps by:
a worker's attempt lives as long as its worker is heard from, whichever server it talks to.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from modelrunner.api.deps import AccessDep, AuthenticatedAttempt, PlatformDep
from modelrunner.api.workers_schemas import (
    ClaimedAttempt,
    ClaimRequest,
    FinishReport,
    HeartbeatAnswer,
    HeartbeatRequest,
    StoredKeys,
    StoredUpload,
)
from modelrunner.artifacts.store import StoredFile
from modelrunner.backends.worker_pool import WorkerPool
from modelrunner.clock import utcnow
from modelrunner.engine import attempts
from modelrunner.errors import Conflict, NotFound
from modelrunner.execution.job import Outcome
from modelrunner.platform import Platform

router = APIRouter(tags=["workers"])

_SLICE_SECONDS = 1.0  # a claim waits in slices, to notice a worker that hung up
_ATTEMPT_TOKEN_ONLY: dict[int | str, dict[str, Any]] = {
    400: {"description": "A key that could leave the artifact store ('..', an absolute path, a backslash, NUL)"},
    401: {"description": "No token, an unknown one, or the attempt has ended (its token is spent)"},
    403: {"description": "A user's token, another attempt's callback token, or a file the attempt may not touch"},
    409: {"description": "The pool no longer runs the attempt (declared lost, or the server restarted)"},
}


def _pool(platform: Platform, name: str) -> WorkerPool:
    backend = platform.backends.get(name)
    if not isinstance(backend, WorkerPool):
        pools = sorted(n for n, b in platform.backends.items() if isinstance(b, WorkerPool))
        raise NotFound(
            f"this server runs no worker pool '{name}' (it runs: {', '.join(pools) or 'none'}); declare it under "
            "`backends:` in modelrunner.yaml as `{type: worker}` and restart the server",
            pool=name,
        )
    return backend


def _attempt_pool(attempt: AuthenticatedAttempt, platform: PlatformDep) -> tuple[int, WorkerPool]:
    """The attempt and the pool running it, once the request carries its live callback token."""
    attempt_id = attempt.id
    for backend in platform.backends.values():
        if isinstance(backend, WorkerPool) and backend.holds(attempt_id):
            return attempt_id, backend
    raise Conflict(f"attempt {attempt_id} is not running on a worker pool of this server", attempt=attempt_id)


AttemptPool = Annotated[tuple[int, WorkerPool], Depends(_attempt_pool)]


def _renew_lease(platform: Platform, pool: WorkerPool, attempt_id: int) -> None:
    """The worker holding the attempt was heard from: its stored lease runs on from now."""
    seconds = pool.runner_lease_seconds(attempt_id)
    if seconds is not None:  # not held any more: nothing to keep
        with platform.database.write() as session:
            attempts.renew_lease(session, attempt_id, utcnow() + dt.timedelta(seconds=seconds))


def _served_pool(pool: str, platform: PlatformDep, access: AccessDep) -> WorkerPool:
    """The pool, once the caller may serve it (checked before the body)."""
    access.require_pool_worker(pool)
    return _pool(platform, pool)


@router.post(
    "/pools/{pool}/claim",
    response_model=ClaimedAttempt,
    summary="Claim the next attempt of a worker pool (a site admin or the group `workers`)",
    responses={204: {"description": "No work within `wait` seconds: ask again"}},
)
async def claim(
    served: Annotated[WorkerPool, Depends(_served_pool)],
    body: ClaimRequest,
    request: Request,
    platform: PlatformDep,
    wait: Annotated[float, Query(ge=0, le=20, description="How long to wait for work, in seconds")] = 20,
) -> ClaimedAttempt | Response:
    """Waits up to `wait` seconds for an attempt of the pool; answers 204 when none came. The
    claimer then owns the attempt: it sends heartbeats (at least every `heartbeat_seconds`) with
    the attempt's callback token, or loses it after `lease_seconds`."""
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        left = deadline - asyncio.get_running_loop().time()
        claimed = await run_in_threadpool(served.claim, body.worker, max(0.0, min(left, _SLICE_SECONDS)))
        if claimed is not None:
            await run_in_threadpool(_renew_lease, platform, served, claimed.attempt_id)
            job = json.loads(claimed.job_json)
            return ClaimedAttempt(
                attempt_id=claimed.attempt_id,
                job=job,
                callback_token=job["callback_token"],
                heartbeat_seconds=claimed.heartbeat_seconds,
                lease_seconds=served.lease_seconds,
            )
        if left <= _SLICE_SECONDS or platform.stopping.is_set() or await request.is_disconnected():
            return Response(status_code=204)


@router.post(
    "/attempts/{attempt_id}/heartbeat",
    response_model=HeartbeatAnswer,
    summary="Keep a claimed attempt (its callback token only)",
    responses=_ATTEMPT_TOKEN_ONLY,
)
def heartbeat(attempt: AttemptPool, body: HeartbeatRequest, platform: PlatformDep) -> HeartbeatAnswer:
    """The worker still runs the attempt (with `pid` once the model's process runs): its lease
    runs `lease_seconds` from now. The answer says whether to go on, or to stop the model
    (cancelled, timed out)."""
    attempt_id, pool = attempt
    said = pool.heartbeat(attempt_id, pid=body.pid, host=body.host)
    _renew_lease(platform, pool, attempt_id)
    if said.stop is None:
        return HeartbeatAnswer(action="continue")
    return HeartbeatAnswer(action="stop", reason=said.stop, message=said.message)


@router.get(
    "/attempts/{attempt_id}/files",
    response_model=StoredKeys,
    summary="List stored files a claimed attempt needs (its callback token only)",
    responses=_ATTEMPT_TOKEN_ONLY,
)
def list_files(
    attempt: AttemptPool, platform: PlatformDep, prefix: Annotated[str, Query(min_length=1, max_length=1000)]
) -> StoredKeys:
    """The keys of the artifact store under `prefix` (an input's data version, an earlier
    attempt's checkpoint): only what the attempt needs."""
    attempt_id, pool = attempt
    pool.require_readable(attempt_id, prefix.strip("/"))
    return StoredKeys(keys=platform.artifacts.keys(prefix.strip("/")))


@router.get(
    "/attempts/{attempt_id}/files/{key:path}",
    summary="Download a stored file a claimed attempt needs (its callback token only)",
    response_class=StreamingResponse,
    responses={**_ATTEMPT_TOKEN_ONLY, 200: {"content": {"application/octet-stream": {}}}},
)
def get_file(attempt: AttemptPool, platform: PlatformDep, key: str) -> StreamingResponse:
    """The model snapshot, an input's file, an upstream step's output or a checkpoint's file."""
    attempt_id, pool = attempt
    pool.require_readable(attempt_id, key)
    try:
        chunks = platform.artifacts.stream(platform.artifacts.uri(key))
    except FileNotFoundError as exc:
        raise NotFound(f"no stored file {key}", key=key) from exc

    return StreamingResponse(chunks, media_type="application/octet-stream")


@router.put(
    "/attempts/{attempt_id}/files/{key:path}",
    response_model=StoredUpload,
    summary="Store a file of a claimed attempt: an output, its log (its callback token only)",
    responses=_ATTEMPT_TOKEN_ONLY,
    openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}, "required": True}},
)
async def put_file(attempt: AttemptPool, platform: PlatformDep, key: str, request: Request) -> StoredUpload:
    """Streams the body into the attempt's own folder of the artifact store (its outputs, log,
    outcome and checkpoint); the answer has the stored file's size, sha256 and URI."""
    attempt_id, pool = attempt
    pool.require_writable(attempt_id, key)
    with tempfile.TemporaryDirectory(prefix="modelrunner-upload-") as folder:
        local = Path(folder) / "upload"
        with local.open("wb") as target:
            async for chunk in request.stream():
                await run_in_threadpool(target.write, chunk)
        pool.job_of(attempt_id)  # still running: a lost attempt stores nothing more
        stored: StoredFile = await run_in_threadpool(platform.artifacts.put_file, local, key, key)
    return StoredUpload(size=stored.size, sha256=stored.sha256, uri=stored.uri)


@router.post(
    "/attempts/{attempt_id}/finish",
    status_code=204,
    response_class=Response,
    summary="Report how a claimed attempt ended (its callback token only)",
    responses=_ATTEMPT_TOKEN_ONLY,
)
def finish(attempt: AttemptPool, body: FinishReport) -> Response:
    """The outcome, with the outputs already stored through `PUT .../files/...`. Once recorded,
    the attempt's token is spent."""
    attempt_id, pool = attempt
    outputs = [StoredFile(o.path, o.size, o.sha256, o.uri) for o in body.outputs]
    partial = [StoredFile(o.path, o.size, o.sha256, o.uri) for o in body.partial_outputs]
    outcome = Outcome(body.status, exit_code=body.exit_code, error=body.error, outputs=outputs, partial_outputs=partial)
    pool.finish(attempt_id, outcome)
    return Response(status_code=204)
