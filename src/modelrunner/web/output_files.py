"""The files a run's attempts wrote, as the run page serves them: partial outputs as downloads,
and HTML outputs (a notebook's report, say) shown inline in a sandboxed frame.

Whatever a model wrote is served by api/file_responses.py, which never lets it run as a page of
this site: the frame's source has a CSP ``sandbox`` of its own, so a direct visit is sandboxed too."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from modelrunner.api import file_responses
from modelrunner.api.attempt_outputs_routes import AttemptNumber
from modelrunner.engine import run_reads
from modelrunner.errors import NotFound
from modelrunner.web.rendering import PageRoute
from modelrunner.web.session import PageRunViewer, platform_of

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get("/runs/{run_id}/attempts/{number}/outputs/{path:path}")
def download_partial_output(
    viewer: PageRunViewer, number: AttemptNumber, path: str, request: Request
) -> StreamingResponse:
    """A partial output of the attempt, always as a download."""
    platform = platform_of(request)
    found = run_reads.attempt_partial_output(platform, viewer, number, path)
    return file_responses.download(platform.artifacts, found.uri, path, found.size, found.sha256)


@router.get("/runs/{run_id}/view/{path:path}")
def view_output(viewer: PageRunViewer, path: str, request: Request) -> StreamingResponse:
    """An HTML output of the run, for the run page's sandboxed frame."""
    _require_html(path)
    platform = platform_of(request)
    found = run_reads.run_output(platform, viewer, path)
    return file_responses.inline_html(platform.artifacts, found.uri, path, found.size, found.sha256)


@router.get("/runs/{run_id}/attempts/{number}/view/{path:path}")
def view_partial_output(viewer: PageRunViewer, number: AttemptNumber, path: str, request: Request) -> StreamingResponse:
    """An HTML partial output of the attempt, for the run page's sandboxed frame."""
    _require_html(path)
    platform = platform_of(request)
    found = run_reads.attempt_partial_output(platform, viewer, number, path)
    return file_responses.inline_html(platform.artifacts, found.uri, path, found.size, found.sha256)


def _require_html(path: str) -> None:
    if not file_responses.is_html(path):
        raise NotFound(f"only HTML outputs (.html, .htm) are shown inline; '{path}' can be downloaded", path=path)
