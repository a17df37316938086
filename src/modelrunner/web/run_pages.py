"""The run page: status, live progress and log (server-sent events), attempts, outputs and the
first result's chart (refreshed by htmx as the run changes), cancel, downloads."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from modelrunner.api import file_responses
from modelrunner.auth.access import Access
from modelrunner.auth.run_access import RunPermission, may_cancel
from modelrunner.engine import run_explain, run_reads
from modelrunner.engine.run_reads import RunBundle
from modelrunner.engine.states import FINAL_RUN_STATES, RunStatus
from modelrunner.notify import summaries
from modelrunner.platform import Platform
from modelrunner.store.row_ids import Position
from modelrunner.store.tables import AttemptRow, OutputRow, RunKind, RunRow
from modelrunner.web import output_preview
from modelrunner.web.pipeline_graph import graph_of
from modelrunner.web.rendering import PageRoute, render
from modelrunner.web.result_pages import Chart, chart_of
from modelrunner.web.session import PageRunCanceller, PageRunViewer, checked_form, platform_of

router = APIRouter(route_class=PageRoute, include_in_schema=False)

LOG_TAIL = 64 * 1024  # bytes of the log a page shows, and at most in one event of the stream that follows
STREAM_INTERVAL = 0.5  # seconds between two looks at the store
STREAM_SECONDS = 300.0  # then the browser connects again: no connection is held for ever
RECONNECT_MS = 1000


@dataclass(frozen=True)
class RunView:
    """What the stream tells the page about a run at one moment."""

    status: str
    progress: int | None  # percent
    message: str
    attempts: str  # each attempt's number and status: a change means the page's details are stale

    @classmethod
    def of(cls, run: RunRow, attempts: list[AttemptRow]) -> RunView:
        fraction = run.progress_fraction
        percent = round(max(0.0, min(1.0, fraction)) * 100) if fraction is not None else None
        states = " ".join(f"{a.number}:{a.status}" for a in attempts)
        return cls(run.status, percent, run.progress_message or "", states)


@router.get("/runs/{run_id}")
def run_page(viewer: PageRunViewer, request: Request) -> Response:
    platform = platform_of(request)
    bundle = run_reads.run_detail(platform, viewer)
    run = bundle.run
    tail = run_reads.log_page(platform, run, None, LOG_TAIL)
    pipeline = run_reads.pipeline_progress(platform, viewer)[1] if run.kind == RunKind.PIPELINE else None
    return render(
        request,
        "run.html",
        title=f"Run {run.id} of {run.model_name}",
        view=RunView.of(run, bundle.attempts),
        submitter=bundle.submitter,
        log=tail.data.decode("utf-8", "replace"),
        log_offset=tail.offset,
        graph=graph_of(run, pipeline),
        # Why it was or was not a cache hit (its steps', for a pipeline run); snapshots are not read.
        explained=run_explain.explain_run(platform, viewer, by_file=False)[1],
        **_details(platform, bundle, viewer.access),
    )


@router.get("/runs/{run_id}/details")
def run_details(viewer: PageRunViewer, request: Request) -> Response:
    """The part of the run page that changes with its state (attempts, outputs, results, Cancel),
    fetched again by the page whenever its event stream reports a change."""
    platform = platform_of(request)
    bundle = run_reads.run_detail(platform, viewer)
    return render(request, "run_details.html", **_details(platform, bundle, viewer.access))


def _details(platform: Platform, bundle: RunBundle, access: Access) -> dict[str, Any]:
    run, outputs = bundle.run, bundle.outputs
    final = run.status in FINAL_RUN_STATES
    viewable = {o.path for o in outputs if output_preview.kind_of(o.path)}
    partial = bundle.partial_outputs
    html = {o.path for o in outputs if file_responses.is_html(o.path)}
    html |= {f"{n}/{o.path}" for n, files in partial.items() for o in files if file_responses.is_html(o.path)}
    return {
        "run": run,
        "final": final,
        "attempts": bundle.attempts,
        "outputs": outputs,
        "partial_outputs": partial,  # attempt number -> what it left (never the result)
        "html": html,  # shown inline, in a sandboxed frame: output paths, "<attempt>/<path>" of partial ones
        "viewable": viewable,
        "chart": _first_chart(platform, run, outputs),
        "may_cancel": not final and may_cancel(access, run),
        "summary": _summary(platform, run, outputs),
    }


def _summary(platform: Platform, run: RunRow, outputs: list[OutputRow]) -> Markup | None:
    """The model's own summary of a succeeded run (its ``notify.summary``), sanitised HTML."""
    if run.status != RunStatus.SUCCEEDED or not outputs:
        return None
    with platform.database.read() as session:
        found = summaries.run_summary(session, platform.artifacts, run, outputs)
    # Safe to mark: rendered without raw HTML surviving the sanitiser (notify/summaries.py).
    return Markup(summaries.to_html(found.markdown)) if found is not None else None


def _first_chart(platform: Platform, run: RunRow, outputs: list[OutputRow]) -> Chart | None:
    """The run page draws its first CSV output with numbers, so a projection shows at once."""
    for output in outputs:
        if output_preview.kind_of(output.path) == "csv":
            table = output_preview.read_table(platform.artifacts, output)
            if table.numeric:
                return chart_of("run", output.path, [(f"run {run.id}", table)], None, [])
    return None


@router.get("/runs/{run_id}/stream")
def run_stream(
    viewer: PageRunViewer,
    request: Request,
    offset: Position = 0,
    last_event_id: Annotated[Position | None, Header()] = None,
) -> StreamingResponse:
    """Server-sent events: ``progress`` (status, percent, message, new log text; its id is the log
    offset so far) whenever something changed, then ``end`` once the run is final.

    A stream lasts at most ``STREAM_SECONDS``; the browser then connects again by itself with
    ``Last-Event-ID`` and goes on from there, asked again who it is and whether it may look."""
    platform = platform_of(request)
    run_reads.checked_run(platform, viewer, "following a run")
    start = last_event_id if last_event_id is not None else offset
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(_events(platform, viewer, max(0, start)), media_type="text/event-stream", headers=headers)


async def _events(platform: Platform, viewer: RunPermission, offset: int) -> AsyncIterator[str]:
    last: RunView | None = None
    deadline = time.monotonic() + STREAM_SECONDS
    yield f"retry: {RECONNECT_MS}\n\n"
    while True:
        progress = await run_in_threadpool(run_reads.run_progress, platform, viewer, offset, LOG_TAIL)
        run, page = progress.run, progress.log
        log, offset, more = page.data.decode("utf-8", "replace"), page.offset, page.offset < page.size
        view = RunView.of(run, progress.attempts)
        if view != last or log:
            data = {"status": view.status, "progress": view.progress, "message": view.message, "log": log}
            data["attempts"] = view.attempts
            yield f"event: progress\nid: {offset}\ndata: {json.dumps(data)}\n\n"
            last = view
        if run.status in FINAL_RUN_STATES and not more:
            yield f"event: end\ndata: {json.dumps({'status': run.status})}\n\n"
            return
        if time.monotonic() >= deadline or platform.stopping.is_set():
            return  # the browser connects again, to this server or the next one
        if not more:  # else the log is ahead of the page: its next part goes at once
            await asyncio.sleep(STREAM_INTERVAL)


@router.post("/runs/{run_id}/cancel")
async def cancel_run(canceller: PageRunCanceller, request: Request) -> Response:
    """The API's rule: ``run`` cancels one's own runs, ``admin`` anyone's."""
    await checked_form(request)
    platform = platform_of(request)
    await run_in_threadpool(run_reads.run_to_cancel, platform, canceller)
    await run_in_threadpool(platform.cancel, canceller.run_id)
    return RedirectResponse(f"/runs/{canceller.run_id}", status_code=303)


@router.get("/runs/{run_id}/outputs/{path:path}")
def download_output(viewer: PageRunViewer, path: str, request: Request) -> StreamingResponse:
    """Always a download that never runs as a page of this site (api/file_responses.py)."""
    platform = platform_of(request)
    found = run_reads.run_output(platform, viewer, path)
    return file_responses.download(platform.artifacts, found.uri, path, found.size, found.sha256)
