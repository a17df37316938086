"""/api/v1/attempts: what a running attempt reports about itself, with its callback token."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from modelrunner.api.deps import AuthenticatedAttempt, PlatformDep
from modelrunner.engine import attempts

router = APIRouter(prefix="/attempts", tags=["attempts"])


class ProgressReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fraction: float = Field(ge=0, le=1, description="How much of the work is done, 0 to 1")
    message: str = Field(default="", max_length=2000)


@router.post(
    "/{attempt_id}/progress",
    status_code=204,
    summary="Report an attempt's progress (the attempt's callback token only)",
    response_class=Response,
    responses={
        401: {"description": "No token, an unknown one, or the attempt has ended"},
        403: {"description": "A user's token, or another attempt's callback token"},
    },
)
def report_progress(attempt_id: AuthenticatedAttempt, report: ProgressReport, platform: PlatformDep) -> Response:
    """What a model prints as `::progress:: 0.4 message`, over HTTP: for runners that are not the
    server's own processes. The URL and token are in the attempt's MODELRUNNER_CALLBACK_URL and
    MODELRUNNER_CALLBACK_TOKEN. Reports of an attempt that is not running are ignored."""
    with platform.database.write() as session:
        attempts.record_progress(session, attempt_id, report.fraction, report.message)
    return Response(status_code=204)
