"""Request and response bodies of the HTTP API (the OpenAPI document is generated from these)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from modelrunner.engine.cache_mode import CacheMode
from modelrunner.engine.submit import SubmitOutcome
from modelrunner.spec.workspace import Model
from modelrunner.store.tables import AttemptRow, EventRow, OutputRow, RunRow


class ModelSummary(BaseModel):
    name: str
    title: str
    description: str
    version: str = Field(description="Content hash of the model folder")


class ModelDetail(ModelSummary):
    params: dict[str, Any] = Field(description="JSON Schema of the parameters")
    resources: dict[str, Any]
    retries: dict[str, int]
    outputs: list[dict[str, str]]

    @classmethod
    def of(cls, model: Model) -> ModelDetail:
        spec = model.spec
        return cls(
            name=spec.name,
            title=spec.title,
            description=spec.description,
            version=model.version,
            params=spec.params,
            resources=spec.resources.model_dump(),
            retries=spec.retries.model_dump(),
            outputs=[o.model_dump() for o in spec.outputs],
        )


class SubmitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = Field(default_factory=dict, description="Parameters; defaults are filled in")
    cache: CacheMode = Field(
        default=CacheMode.USE,
        description="use: a cached result if any; refresh: compute again; only: a cached result or 409",
    )
    max_age: float | None = Field(default=None, ge=0, description="Accept cached results at most this many seconds old")


class Progress(BaseModel):
    fraction: float | None
    message: str | None


class AttemptOut(BaseModel):
    number: int
    status: str
    backend: str
    exit_code: int | None
    error: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None

    @classmethod
    def of(cls, row: AttemptRow) -> AttemptOut:
        return cls.model_validate(row, from_attributes=True)


class OutputOut(BaseModel):
    path: str
    size: int
    sha256: str
    url: str = Field(description="API path that downloads the file")

    @classmethod
    def of(cls, row: OutputRow) -> OutputOut:
        return cls(
            path=row.path, size=row.size, sha256=row.sha256, url=f"/api/v1/runs/{row.run_id}/outputs/{quote(row.path)}"
        )


class RunSummary(BaseModel):
    id: int
    model: str
    model_version: str
    status: str
    cache_hit: bool
    source_run_id: int | None = Field(description="For a cache hit: the run that computed the result")
    cache_key: str
    params: dict[str, Any]
    progress: Progress
    error: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None

    @classmethod
    def of(cls, row: RunRow) -> RunSummary:
        return cls(**_run_fields(row))


class RunDetail(RunSummary):
    attempts: list[AttemptOut]
    outputs: list[OutputOut]

    @classmethod
    def of_rows(cls, row: RunRow, attempts: list[AttemptRow], outputs: list[OutputRow]) -> RunDetail:
        return cls(
            **_run_fields(row),
            attempts=[AttemptOut.of(a) for a in attempts],
            outputs=[OutputOut.of(o) for o in outputs],
        )


class SubmitResponse(RunDetail):
    submission: SubmitOutcome = Field(description="created, joined (an identical run in flight) or cache_hit")


class RunPage(BaseModel):
    items: list[RunSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null on the last page")


class EventOut(BaseModel):
    id: int
    type: str
    data: dict[str, Any]
    created_at: dt.datetime

    @classmethod
    def of(cls, row: EventRow) -> EventOut:
        return cls.model_validate(row, from_attributes=True)


class EventPage(BaseModel):
    items: list[EventOut]
    next_after: int = Field(description="Pass as `after` to get only newer events")


class Health(BaseModel):
    status: str


def _run_fields(row: RunRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "model": row.model_name,
        "model_version": row.model_version,
        "status": row.status,
        "cache_hit": row.cache_hit,
        "source_run_id": row.source_run_id,
        "cache_key": row.cache_key,
        "params": row.params,
        "progress": Progress(fraction=row.progress_fraction, message=row.progress_message),
        "error": row.error,
        "created_at": row.created_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
    }
