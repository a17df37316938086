"""/api/v1/export: where each model's schedule items, triggers and on-demand runs stand, and their
runtimes, as JSON or as CSV files to keep in git."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from modelrunner import export
from modelrunner.api.deps import AccessDep, PlatformDep
from modelrunner.auth.access import Access
from modelrunner.export import RuntimeRow, StatusRow
from modelrunner.spec.access_spec import Level

router = APIRouter(prefix="/export", tags=["export"])


class ExportFormat(StrEnum):
    JSON = "json"
    CSV = "csv"


class StatusExport(BaseModel):
    items: list[StatusRow]


class RuntimeExport(BaseModel):
    items: list[RuntimeRow]


ModelFilter = Annotated[str | None, Query(description="Only this model's rows")]
ScheduleFilter = Annotated[
    str | None,
    Query(description="Only the items of this schedule: `<model>/<schedule>`, or a schedule name of any model"),
]
Format = Annotated[ExportFormat, Query(alias="format", description="json (the default) or csv (a file download)")]


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"application/json": {}, "text/csv": {"schema": {"type": "string"}}},
        "description": 'The rows: `{"items": [...]}`, or with format=csv a CSV file with a header row',
    },
    404: {"description": "The model or schedule filter names nothing the workspace or the store knows"},
}


@router.get(
    "/status",
    response_model=StatusExport,
    summary="Last run, last success and outcome counts per schedule item, trigger and on-demand runs",
    responses=_RESPONSES,
)
def export_status(
    platform: PlatformDep,
    access: AccessDep,
    model: ModelFilter = None,
    schedule: ScheduleFilter = None,
    output_format: Format = ExportFormat.JSON,
) -> Response:
    """One row per model and source of runs: each schedule item, each trigger, and the model's
    on-demand runs (users, the API); a rerun counts with the run it computes again. `succeeded`
    counts computed runs; runs answered from the cache are `cache_hits`. Active schedule items
    that never ran are rows with zero counts. Step runs count with their pipeline run."""
    _require(access, model)
    with platform.database.read() as session:
        rows = export.status_rows(session, platform.workspace, model=model, schedule=schedule)
    visible = [r for r in rows if access.may(r.model, Level.VIEW)]
    return _respond(visible, StatusRow, StatusExport, output_format, "status.csv")


@router.get(
    "/runtimes",
    response_model=RuntimeExport,
    summary="Current, previous and mean runtimes per schedule item, trigger and on-demand runs",
    responses=_RESPONSES,
)
def export_runtimes(
    platform: PlatformDep,
    access: AccessDep,
    model: ModelFilter = None,
    schedule: ScheduleFilter = None,
    output_format: Format = ExportFormat.JSON,
) -> Response:
    """The rows of /export/status, with the wall times (first start to end, in seconds) of their
    computed succeeded runs: the newest, the one before it, their ratio, and the mean."""
    _require(access, model)
    with platform.database.read() as session:
        rows = export.runtime_rows(session, platform.workspace, model=model, schedule=schedule)
    visible = [r for r in rows if access.may(r.model, Level.VIEW)]
    return _respond(visible, RuntimeRow, RuntimeExport, output_format, "runtimes.csv")


def _require(access: Access, model: str | None) -> None:
    """Rows are those of the models the caller may view; naming another model is refused."""
    access.require_listing("exporting")
    if model is not None:
        access.require(model, Level.VIEW, "exporting a model's rows")


def _respond(
    rows: Sequence[BaseModel],
    row_type: type[BaseModel],
    page: type[BaseModel],
    output_format: ExportFormat,
    filename: str,
) -> Response:
    if output_format == ExportFormat.CSV:
        headers = {"Content-Disposition": f"attachment; filename={filename}"}
        return Response(export.to_csv(rows, row_type), media_type="text/csv; charset=utf-8", headers=headers)
    # Serialised here: returning the model would make FastAPI validate it a second time.
    return Response(page(items=rows).model_dump_json(), media_type="application/json")
