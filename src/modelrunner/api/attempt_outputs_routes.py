"""/api/v1/runs/{id}/attempts/{number}/outputs: the partial outputs of an attempt that did not
succeed (failed, timed out, cancelled), kept for debugging and never the run's result. Read with
the permission the run's own outputs need (``view`` on its model; a hidden run is unknown)."""

from __future__ import annotations

from typing import Annotated

from annotated_types import Ge, Le
from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from modelrunner.api import file_responses
from modelrunner.api.deps import PlatformDep, RunViewer
from modelrunner.api.schemas import OutputOut
from modelrunner.engine import run_reads

router = APIRouter(prefix="/runs", tags=["runs"])

AttemptNumber = Annotated[int, Ge(1), Le(2**31 - 1)]  # a 32-bit column in the store


@router.get(
    "/{run_id}/attempts/{number}/outputs",
    response_model=list[OutputOut],
    summary="The partial outputs of one attempt (what it wrote before it failed, timed out or was cancelled)",
)
def list_partial_outputs(viewer: RunViewer, number: AttemptNumber, platform: PlatformDep) -> list[OutputOut]:
    run, partial = run_reads.attempt_partial_outputs(platform, viewer, number)
    return [OutputOut.of_partial(run.id, number, p) for p in partial]


@router.get(
    "/{run_id}/attempts/{number}/outputs/{path:path}",
    summary="Download one partial output of an attempt",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}, "text/plain": {}}}},
)
def download_partial_output(
    viewer: RunViewer, number: AttemptNumber, path: str, platform: PlatformDep
) -> StreamingResponse:
    """An attachment that never runs as a page of this site (api/file_responses.py)."""
    found = run_reads.attempt_partial_output(platform, viewer, number, path)
    return file_responses.download(platform.artifacts, found.uri, path, found.size, found.sha256)
