"""/api/v1/attempts: what a running attempt reports about itself, with its callback token."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from modelrunner.api.deps import AuthenticatedAttempt, PlatformDep
from modelrunner.engine import attempts

router = APIRouter(prefix="/attempts", tags=["attempts"])
_ATTEMPT_TOKEN_ONLY: dict[int | str, dict[str, Any]] = {
    401: {"description": "No token, an unknown one, or the attempt has ended"},
    403: {"description": "A user's token, or another attempt's callback token"},
}


class ProgressReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fraction: float = Field(ge=0, le=1, description="How much of the work is done, 0 to 1")
    message: str = Field(default="", max_length=2000)


@router.post(
    "/{attempt_id}/progress",
    status_code=204,
    summary="Report an attempt's progress (the attempt's callback token only)",
    response_class=Response,
    responses=_ATTEMPT_TOKEN_ONLY,
)
def report_progress(attempt: AuthenticatedAttempt, report: ProgressReport, platform: PlatformDep) -> Response:
    """What a model prints as `::progress:: 0.4 message`, over HTTP: for runners that are not the
    server's own processes. The URL and token are in the attempt's MODELRUNNER_CALLBACK_URL and
    MODELRUNNER_CALLBACK_TOKEN. Reports of an attempt that is not running are ignored."""
    with platform.database.write() as session:
        attempts.record_progress(session, attempt.id, report.fraction, report.message)
    return Response(status_code=204)


class LogAppended(BaseModel):
    size: int = Field(description="How many bytes of the attempt's log the server has: send from here on")


@router.post(
    "/{attempt_id}/log",
    response_model=LogAppended,
    summary="Append to a running attempt's log (the attempt's callback token only)",
    responses=_ATTEMPT_TOKEN_ONLY,
    openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}, "required": True}},
)
async def append_log(
    attempt: AuthenticatedAttempt,
    request: Request,
    platform: PlatformDep,
    offset: Annotated[int, Query(ge=0, description="Where in the attempt's log the bytes go")],
) -> LogAppended:
    """The body holds the attempt's log from `offset` on, as the runner has it so far: how the log
    of an attempt that runs away from the server (a worker, Dask, Slurm, a container) is followed
    while it runs. Bytes the server has are skipped, so a chunk may be sent again; the answer says
    where the next chunk starts."""
    data = await request.body()
    size = await run_in_threadpool(platform.logs.append, attempt.run_id, attempt.number, offset, data)
    return LogAppended(size=size)
