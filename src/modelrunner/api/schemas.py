"""Request and response bodies of the HTTP API (the OpenAPI document is generated from these)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any
from urllib.parse import quote

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from modelrunner.data.catalog import DatasetSummary
from modelrunner.data.source import public_url
from modelrunner.engine.cache_mode import CacheMode
from modelrunner.engine.pipelines import StepState, StepStatus
from modelrunner.engine.run_reads import RunBundle
from modelrunner.engine.submit import SubmitOutcome
from modelrunner.errors import SpecError
from modelrunner.spec.dataset_spec import DatasetSpec, FilesDataset
from modelrunner.spec.duration import parse_duration
from modelrunner.spec.model_spec import Resources
from modelrunner.spec.workspace import Model
from modelrunner.store.run_reads_queries import ListedRun
from modelrunner.store.tables import (
    AttemptRow,
    DatasetSyncRow,
    DatasetVersionRow,
    EventRow,
    OutputRow,
    PartialOutputRow,
    RunRow,
)

Duration = Annotated[
    float,
    BeforeValidator(lambda value: parse_duration(value) if isinstance(value, str) else value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "description": "seconds"},
                {"type": "string", "examples": ["90s", "30m", "2h", "2d"]},
            ]
        }
    ),
]
"""Seconds, given as a number or as a duration such as ``"30m"`` or ``"2d"``."""


class ModelSummary(BaseModel):
    name: str
    title: str
    description: str
    version: str = Field(description="Content hash of the model folder")


class ModelDetail(ModelSummary):
    params: dict[str, Any] = Field(description="JSON Schema of the parameters")
    resources: dict[str, Any] = Field(
        description="cpu, memory (as written, e.g. 8Gi), gpus, timeout (seconds), class: with the values of "
        "the resource class filled in"
    )
    retries: dict[str, int]
    outputs: list[dict[str, str]]
    inputs: dict[str, str] = Field(
        description="Input name -> dataset name; each run uses one version of each (the newest unless pinned)"
    )
    steps: dict[str, dict[str, Any]] = Field(
        description="A pipeline's steps (command, needs, foreach, publish, resources, retries), in order; "
        "empty for a model with one command"
    )
    schedules: list[dict[str, Any]]
    triggers: list[dict[str, Any]]
    automatic: bool = Field(description="false: its schedules and triggers create no runs")

    @classmethod
    def of(cls, model: Model, classes: Mapping[str, Resources]) -> ModelDetail:
        """``resources`` with the values of the resource class they name, while it is declared."""
        try:
            spec = model.spec.in_classes(classes)
        except SpecError:
            spec = model.spec  # `modelrunner check` names the missing class
        return cls(
            name=spec.name,
            title=spec.title,
            description=spec.description,
            version=model.version,
            params=spec.params,
            resources=spec.resources.model_dump(mode="json", by_alias=True, exclude_none=True),
            retries=spec.retries.model_dump(),
            outputs=[o.model_dump() for o in spec.outputs],
            inputs=dict(spec.inputs),
            steps={name: spec.steps[name].model_dump(mode="json", by_alias=True) for name in spec.step_order()},
            schedules=[s.model_dump(mode="json", exclude_none=True) for s in spec.schedules],
            triggers=[t.model_dump(mode="json", exclude_none=True) for t in spec.triggers],
            automatic=spec.automatic,
        )


class SubmitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = Field(default_factory=dict, description="Parameters; defaults are filled in")
    cache: CacheMode = Field(
        default=CacheMode.USE,
        description="use: a cached result if any; refresh: compute again; only: a cached result or 409",
    )
    max_age: Duration | None = Field(
        default=None,
        ge=0,
        description="Accept a cached result computed on data no older than this (for a model without inputs: "
        "a result no older than this); seconds or a duration such as '30m', '2d'",
    )
    inputs: dict[str, str] = Field(
        default_factory=dict,
        description="Input name -> the data version to use (a unique prefix of at least 4 characters is "
        "enough); inputs not named here use their dataset's newest version",
    )
    backend: str | None = Field(
        default=None,
        description="Run on this backend (a name under `backends:` in modelrunner.yaml). Needs `admin` on the "
        "model, or a routing rule of one of the caller's groups that sends the model there; without it, the "
        "routing rules, the model's `backend:` and the workspace default decide",
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Resource values for this run only, within the limits of the model's `overridable:` "
        '(e.g. {"timeout": "2h"}); not part of the cache key (a longer timeout computes the same result)',
    )


class Progress(BaseModel):
    fraction: float | None = Field(description="From 0 to 1")
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
    partial_outputs: list[OutputOut] = Field(
        default_factory=list,
        description="What this attempt (failed, timed out, cancelled) had written: for debugging, never the result",
    )

    @classmethod
    def of(cls, row: AttemptRow, partial: Sequence[PartialOutputRow] = ()) -> AttemptOut:
        attempt = cls.model_validate(row, from_attributes=True)
        attempt.partial_outputs = [OutputOut.of_partial(row.run_id, row.number, p) for p in partial]
        return attempt


class OutputOut(BaseModel):
    path: str
    size: int = Field(description="Bytes")
    sha256: str
    url: str = Field(description="API path that downloads the file")

    @classmethod
    def of(cls, row: OutputRow) -> OutputOut:
        return cls(
            path=row.path, size=row.size, sha256=row.sha256, url=f"/api/v1/runs/{row.run_id}/outputs/{quote(row.path)}"
        )

    @classmethod
    def of_partial(cls, run_id: int, number: int, row: PartialOutputRow) -> OutputOut:
        url = f"/api/v1/runs/{run_id}/attempts/{number}/outputs/{quote(row.path)}"
        return cls(path=row.path, size=row.size, sha256=row.sha256, url=url)


class InputVersionOut(BaseModel):
    dataset: str
    version: str


class RunSummary(BaseModel):
    id: int
    kind: str = Field(description="run; pipeline (a model with steps: its children are step runs); step")
    parent_id: int | None = Field(description="For a step run: its pipeline run")
    step: str | None = Field(description="For a step run: the step's name")
    item_key: str | None = Field(description="For a fan-out child: its item's name (its folder downstream)")
    item: Any = Field(description="For a fan-out child: its item (MODELRUNNER_ITEM)")
    origin: str | None = Field(
        description="What asked for it when not a person: schedule:<name>#<item>, trigger:<name>, rerun:<run id>"
    )
    submitted_by: str | None = Field(
        description="The name of the user whose request it is; null for a schedule's or a trigger's runs"
    )
    backend: str = Field(
        description="The backend it runs on (for a cache hit: the one that computed the result); a step run "
        "runs where its pipeline run was routed"
    )
    backend_rule: str = Field(
        description="What chose the backend: request (the submitter named it), routing:<group> (a routing rule "
        "of modelrunner.yaml), model (the model's `backend:`) or workspace (the workspace default)"
    )
    model: str
    model_version: str
    status: str
    cache_hit: bool
    source_run_id: int | None = Field(description="For a cache hit: the run that computed the result")
    cache_key: str
    params: dict[str, Any] = Field(
        description="The validated parameters; in a list of runs, only those that fit the server's "
        "`list_params_bytes` (see `params_truncated`)"
    )
    params_truncated: bool = Field(
        default=False,
        description="True when `params` leaves some parameters out (a list shows a bounded size of them): "
        "GET `url` has them all",
    )
    url: str = Field(description="API path of the run, with all its parameters")
    inputs: dict[str, InputVersionOut] = Field(description="Input name -> the data version the run is computed on")
    progress: Progress
    error: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None

    @classmethod
    def listed(cls, row: ListedRun, users: Mapping[int, str], params_bytes: int) -> RunSummary:
        """The run as a list shows it: the parameters that fit in ``params_bytes`` of JSON, in
        order, the others left out and marked. ``users``: user id -> name, holding (at least) the
        run's submitter."""
        params, truncated = _bounded(row.params, params_bytes)
        submitter = users.get(row.submitted_by) if row.submitted_by is not None else None
        return cls(**{**_run_fields(row, submitter), "params": params, "params_truncated": truncated})


class StepOut(BaseModel):
    name: str
    status: StepStatus
    items: int = Field(description="How many runs the step has in all (its fan-out items; 1 without fan-out)")
    counts: dict[str, int] = Field(description="Run status -> how many of its runs are in it")
    run_ids: list[int]
    error: str | None = Field(description="Why it failed: the first failed run's error")
    reason: str | None = Field(
        default=None, description="Why it is skipped (its `when:`, the profile) or blocked (a step it needs failed)"
    )

    @classmethod
    def of(cls, state: StepState) -> StepOut:
        return cls(
            name=state.name,
            status=state.status,
            items=state.items,
            counts=state.counts,
            run_ids=state.run_ids,
            error=state.error,
            reason=state.reason,
        )


class RunDetail(RunSummary):
    attempts: list[AttemptOut]
    outputs: list[OutputOut]
    steps: list[StepOut] | None = Field(default=None, description="For a pipeline run: its steps, in order")

    @classmethod
    def of_bundle(cls, bundle: RunBundle) -> RunDetail:
        return cls(
            **_run_fields(bundle.run, bundle.submitter),
            attempts=[AttemptOut.of(a, bundle.partial_outputs.get(a.number, ())) for a in bundle.attempts],
            outputs=[OutputOut.of(o) for o in bundle.outputs],
            steps=[StepOut.of(state) for state in bundle.steps] if bundle.steps is not None else None,
        )


class RerunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_step: str | None = Field(
        default=None, alias="from", description="Pipeline: compute this step and everything downstream again"
    )
    only: str | None = Field(default=None, description="Pipeline: compute this step alone again")


class SubmitResponse(RunDetail):
    submission: SubmitOutcome = Field(description="created, joined (an identical run in flight) or cache_hit")


class BatchSubmitRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runs: list[SubmitRequest] = Field(
        description="The runs to submit, each as the body of a single submit; at most the server's "
        "max_batch_runs (1000 unless configured)"
    )


class BatchSubmitResponse(BaseModel):
    runs: list[SubmitResponse] = Field(
        description="Each run as a single submit answers it, in the order asked: created, joined or cache_hit"
    )


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


# --- datasets -----------------------------------------------------------------------------------


class SyncOut(BaseModel):
    id: int
    dataset: str
    status: str = Field(description="queued, running, succeeded or failed")
    walk_all: bool = Field(description="Walks the whole history rather than stopping at the first known version")
    reason: str = Field(description="request (asked for) or poll (the dataset's poll interval passed)")
    progress: Progress
    added: int = Field(description="New versions recorded (once succeeded)")
    error: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None

    @classmethod
    def of(cls, row: DatasetSyncRow) -> SyncOut:
        return cls(
            id=row.id,
            dataset=row.dataset,
            status=row.status,
            walk_all=row.walk_all,
            reason=row.reason,
            progress=Progress(fraction=row.progress_fraction, message=row.progress_message),
            added=row.added,
            error=row.error,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
        )


class SyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    all: bool = Field(
        default=False, description="Walk the whole history (git) instead of stopping at the first known version"
    )


class SyncStarted(SyncOut):
    joined: bool = Field(description="True when a sync of the dataset was already queued or running: this is that one")


class DatasetVersionOut(BaseModel):
    version: str = Field(description="A commit sha, or a hash of the content")
    time: dt.datetime = Field(description="When the data took this state: commit time, Last-Modified, or first seen")
    discovered_at: dt.datetime = Field(description="When a sync recorded it")
    summary: str
    file_count: int
    total_size: int = Field(description="Bytes")
    author: str | None = Field(default=None, description="Who made it (a managed dataset's change)")
    message: str | None = Field(default=None, description="Why, in their words (a managed dataset's change)")
    parent: str | None = Field(default=None, description="The version it changed (a managed dataset's change)")

    @classmethod
    def of(cls, row: DatasetVersionRow) -> DatasetVersionOut:
        meta = row.meta or {}
        return cls(
            version=row.version,
            time=row.time,
            discovered_at=row.discovered_at,
            summary=row.summary,
            file_count=row.file_count,
            total_size=row.total_size,
            author=meta.get("author"),
            message=meta.get("message"),
            parent=meta.get("parent"),
        )


class DataFileOut(BaseModel):
    path: str
    size: int = Field(description="Bytes")


class DatasetVersionDetail(DatasetVersionOut):
    sync_id: int = Field(description="The sync that recorded it")
    files: list[DataFileOut]

    @classmethod
    def of(cls, row: DatasetVersionRow) -> DatasetVersionDetail:
        return cls(
            **DatasetVersionOut.of(row).model_dump(),
            sync_id=row.sync_id,
            files=[DataFileOut(path=f["path"], size=f["size"]) for f in row.files],
        )


class DatasetSummaryOut(BaseModel):
    name: str
    source: str = Field(description="git, files, http or managed")
    description: str
    poll: float | None = Field(description="Seconds between automatic syncs; null when synced only on request")
    version_count: int
    newest: DatasetVersionOut | None = Field(description="The version with the newest data; null before any")
    last_sync: SyncOut | None = Field(description="The newest sync; null before the first")

    @classmethod
    def of(cls, summary: DatasetSummary) -> DatasetSummaryOut:
        return cls(**_dataset_fields(summary))


class DatasetDetail(DatasetSummaryOut):
    spec: dict[str, Any] = Field(
        description="Where the data lives (repo, branch, paths, url); storage options show only their keys, "
        "and user info (passwords, tokens) and query strings are left out of URLs"
    )

    @classmethod
    def of(cls, summary: DatasetSummary) -> DatasetDetail:
        return cls(**_dataset_fields(summary), spec=_public_spec(summary.spec))


class DeletedVersions(BaseModel):
    deleted: int = Field(description="How many recorded versions were removed")


def _dataset_fields(summary: DatasetSummary) -> dict[str, Any]:
    return {
        "name": summary.name,
        "source": summary.spec.source,
        "description": summary.spec.description,
        "poll": summary.spec.poll,
        "version_count": summary.version_count,
        "newest": DatasetVersionOut.of(summary.newest) if summary.newest else None,
        "last_sync": SyncOut.of(summary.last_sync) if summary.last_sync else None,
    }


def _public_spec(spec: DatasetSpec) -> dict[str, Any]:
    """The spec without what may hold credentials: option values, and the user info and query of URLs."""
    shown = spec.model_dump(mode="json", exclude={"options"})
    for key in ("repo", "url"):
        if isinstance(shown.get(key), str):
            shown[key] = public_url(shown[key])
    if isinstance(spec, FilesDataset):
        shown["option_keys"] = sorted(spec.options)
    return shown


def _run_fields(row: RunRow | ListedRun, submitter: str | None) -> dict[str, Any]:
    return {
        "id": row.id,
        "kind": row.kind,
        "parent_id": row.parent_id,
        "step": row.step,
        "item_key": row.item_key,
        "item": row.item,
        "origin": row.origin,
        "submitted_by": submitter,
        "backend": row.backend,
        "backend_rule": row.backend_rule,
        "model": row.model_name,
        "model_version": row.model_version,
        "status": row.status,
        "cache_hit": row.cache_hit,
        "source_run_id": row.source_run_id,
        "cache_key": row.cache_key,
        "params": row.params,
        "url": f"/api/v1/runs/{row.id}",
        "inputs": row.inputs or {},
        "progress": Progress(fraction=row.progress_fraction, message=row.progress_message),
        "error": row.error,
        "created_at": row.created_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
    }


def _bounded(params: dict[str, Any], max_bytes: int) -> tuple[dict[str, Any], bool]:
    """The parameters whose JSON fits in ``max_bytes`` (taken in order, a too large one skipped),
    and whether any was left out."""
    if len(json.dumps(params)) <= max_bytes:
        return params, False
    shown: dict[str, Any] = {}
    used = 2  # {}
    for key, value in params.items():
        size = len(json.dumps({key: value}))  # its "key": value, and a comma to spare
        if used + size <= max_bytes:
            shown[key] = value
            used += size
    return shown, True
