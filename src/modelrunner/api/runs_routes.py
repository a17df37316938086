"""/api/v1/runs: runs, their attempts, progress, events, logs and outputs."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response
from fastapi.responses import StreamingResponse

from modelrunner.api import file_responses
from modelrunner.api.deps import AccessDep, PlatformDep, RunCanceller, RunRunner, RunViewer
from modelrunner.api.schemas import (
    EventOut,
    EventPage,
    OutputOut,
    RerunRequest,
    RunDetail,
    RunPage,
    RunSummary,
    SubmitResponse,
)
from modelrunner.auth.run_access import RunPermission
from modelrunner.engine import run_explain, run_reads
from modelrunner.engine.states import RunStatus
from modelrunner.engine.submit import SubmitOutcome
from modelrunner.errors import InvalidInput
from modelrunner.spec.access_spec import Level
from modelrunner.store.row_ids import Position, RowId, fits
from modelrunner.store.run_reads_queries import RunFilter

router = APIRouter(prefix="/runs", tags=["runs"])


@router.get("", response_model=RunPage, summary="List runs, newest first")
def list_runs(
    platform: PlatformDep,
    access: AccessDep,
    model: str | None = None,
    parent: Annotated[
        RowId | None, Query(description="The step runs of this pipeline run; without it, runs that are not steps")
    ] = None,
    status: Annotated[list[RunStatus] | None, Query(description="Repeat to match any of several")] = None,
    submitter: Annotated[str | None, Query(description="The runs this user submitted (a user name)")] = None,
    backend: Annotated[str | None, Query(description="The runs routed to this backend")] = None,
    param: Annotated[
        list[str] | None,
        Query(
            description="`name=value`: the runs whose parameter has this value; repeat for several. A value that "
            'reads as a JSON number, `true`, `false` or a "quoted text" is matched as that (`r0=2` matches 2.0, '
            "not the text 2); any other value as text (`region=north`)"
        ),
    ] = None,
    since: Annotated[
        str | None,
        Query(description="Runs submitted since: a duration back from now (`2d`, `12h`) or a date or time (UTC)"),
    ] = None,
    until: Annotated[str | None, Query(description="Runs submitted before: as `since`")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page")] = None,
) -> RunPage:
    """The runs of the models the caller may view."""
    which = RunFilter(
        model,
        None,
        parent,
        [s.value for s in status or []],
        _decode(cursor),
        submitter=submitter,
        backend=backend,
        params=run_reads.param_filters(param or []),
        since=run_reads.moment(since, "since") if since is not None else None,
        until=run_reads.moment(until, "until") if until is not None else None,
    )
    listing = run_reads.list_runs(platform, access, which, limit)
    params_bytes = platform.settings.list_params_bytes
    return RunPage(
        items=[RunSummary.listed(r, listing.submitters, params_bytes) for r in listing.runs],
        next_cursor=_encode(listing.runs[-1].id) if listing.more else None,
    )


@router.get("/{run_id}", response_model=RunDetail, summary="A run with its progress, attempts and outputs")
def get_run(viewer: RunViewer, platform: PlatformDep) -> RunDetail:
    """A pipeline run also lists its steps with their states and runs."""
    return RunDetail.of_bundle(run_reads.run_detail(platform, viewer, with_steps=True))


@router.get("/{run_id}/explain", summary="Why the run (each step run of a pipeline run) was or was not a cache hit")
def explain(viewer: RunViewer, platform: PlatformDep) -> dict[str, Any]:
    """For each run: ``outcome`` (cache_hit, computed, recompute_asked, first), a ``reason`` in
    words, the ``source_run`` of a hit, and for a computed run the closest earlier run of the same
    step and item it was ``compared_with`` and the ``differences`` of their keys (part, name,
    before, after)."""
    run, found = run_explain.explain_run(platform, viewer)
    return {"run": run.id, "model": run.model_name, "kind": run.kind, "explanations": [e.as_json() for e in found]}


@router.post(
    "/{run_id}/rerun",
    response_model=SubmitResponse,
    status_code=201,
    summary="Compute a run again; a pipeline from one step, or one step only",
    responses={
        200: {"description": "An identical run is in flight and was joined", "model": SubmitResponse},
        201: {"description": "A new run was queued"},
        404: {"description": "Unknown run, or its model is no longer in the workspace"},
        422: {"description": "An unknown step, `from` and `only` together, or a step run (rerun its pipeline)"},
    },
)
def rerun(runner: RunRunner, platform: PlatformDep, request: Annotated[RerunRequest | None, Body()] = None) -> Response:
    """Same parameters and data versions, the model's current version. `{"from": "summarise"}`
    recomputes that step and every step downstream and reuses the results of the others;
    `{"only": "publish"}` recomputes one step. No body: compute every step again. Needs `run`
    on the model."""
    run_reads.checked_run(platform, runner, "rerunning a run")
    request = request or RerunRequest()
    access = runner.access
    submission = platform.rerun(
        runner.run_id, from_step=request.from_step, only_step=request.only, submitter=access.principal
    )
    # The new run is of the same model, which the caller may run, so may view.
    rerun_viewer = RunPermission(submission.run.id, access, Level.VIEW)
    detail = RunDetail.of_bundle(run_reads.run_detail(platform, rerun_viewer, with_steps=True)).model_dump()
    body = SubmitResponse(**detail, submission=submission.outcome)
    status = 201 if submission.outcome == SubmitOutcome.CREATED else 200
    return Response(body.model_dump_json(), status_code=status, media_type="application/json")


@router.post("/{run_id}/cancel", response_model=RunDetail, summary="Cancel a queued or running run")
def cancel_run(canceller: RunCanceller, platform: PlatformDep) -> RunDetail:
    """Idempotent. A running model gets SIGTERM, then SIGKILL after the grace period; a pipeline
    run's unfinished steps are cancelled with it. 409 if the run already ended otherwise. Needs
    `run` on the model to cancel one's own runs, `admin` to cancel anyone's."""
    run_reads.run_to_cancel(platform, canceller)
    platform.cancel(canceller.run_id)
    viewer = RunPermission(canceller.run_id, canceller.access, Level.VIEW)
    return RunDetail.of_bundle(run_reads.run_detail(platform, viewer, with_steps=True))


@router.get(
    "/{run_id}/logs",
    summary="The run's log (stdout and stderr of every attempt), a page at a time",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {}},
            "description": "Log text after `offset`, at most the server's `log_page_bytes` (1 MiB by default)",
            "headers": {
                "X-Log-Offset": {"description": "The offset to ask for next", "schema": {"type": "integer"}},
                "X-Log-Size": {"description": "The log's size so far", "schema": {"type": "integer"}},
                "X-Run-Status": {"description": "The run's status", "schema": {"type": "string"}},
            },
        }
    },
)
def get_logs(viewer: RunViewer, platform: PlatformDep, offset: Position = 0) -> Response:
    """A cache hit shows the log of the run that computed its result. Headers: `X-Log-Offset` is
    the offset to ask for next; `X-Log-Size` the log's size so far (while the offset is below it,
    there is more to read at once); `X-Run-Status` the run's status, so a follower knows when to
    stop."""
    log = run_reads.run_log(platform, viewer, offset, platform.settings.log_page_bytes)
    headers = {"X-Log-Offset": str(log.page.offset), "X-Log-Size": str(log.page.size), "X-Run-Status": log.status}
    return Response(log.page.data, media_type="text/plain; charset=utf-8", headers=headers)


@router.get("/{run_id}/events", response_model=EventPage, summary="The run's events, oldest first")
def get_events(
    viewer: RunViewer,
    platform: PlatformDep,
    after: Position = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> EventPage:
    rows = run_reads.run_events(platform, viewer, after, limit)
    return EventPage(items=[EventOut.of(r) for r in rows], next_after=rows[-1].id if rows else after)


@router.get("/{run_id}/outputs", response_model=list[OutputOut], summary="The run's output files")
def list_outputs(viewer: RunViewer, platform: PlatformDep) -> list[OutputOut]:
    _, outputs = run_reads.run_outputs(platform, viewer, "listing a run's outputs")
    return [OutputOut.of(o) for o in outputs]


@router.get(
    "/{run_id}/outputs/{path:path}",
    summary="Download one output file",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_output(viewer: RunViewer, path: str, platform: PlatformDep) -> StreamingResponse:
    """An attachment that never runs as a page of this site (api/file_responses.py)."""
    found = run_reads.run_output(platform, viewer, path)
    return file_responses.download(platform.artifacts, found.uri, path, found.size, found.sha256)


def _encode(run_id: int) -> str:
    return base64.urlsafe_b64encode(str(run_id).encode()).decode().rstrip("=")


def _decode(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        before = int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        before = -1
    if not fits(before):  # a run id this API gave out fits; anything else names no run
        raise InvalidInput("cursor is not one this API gave out", field="cursor", location="query")
    return before
