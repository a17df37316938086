"""Status and runtime exports: per model, one row per schedule item, per trigger and for on-demand
runs, as rows for the API and as CSV for teams that keep status files in git.

How runs are grouped. A team moving from a cron VM reads one row per job the machine ran, so:

- a run a schedule created belongs to its schedule item (``schedule:<model>/<schedule>#<i>``):
  one row per parameter set the schedule submits at every firing;
- a run a trigger created belongs to that trigger (``trigger:<model>/<trigger>``): a trigger is
  a job too (the cron script that ran on fresh data), and mixing its runs with people's would
  let a good run by hand hide a trigger whose runs fail;
- a rerun (``rerun:<id>``) belongs where the run it computes again belongs, following a rerun of
  a rerun back to the first run: rerunning a failed job by hand is how a cron VM's operator fixed
  that job, and the job's row should then show it fixed, not a failure beside an unrelated
  success;
- every other run (asked for by a user or the API) belongs to the model's one on-demand row,
  whose schedule, item and trigger are empty.

Step runs are never rows: they belong to their pipeline run. The active schedule items of the
workspace that never created a run are rows too (with zero counts), so a schedule that never
fires shows up rather than being missing from the file.

What the counts count. ``succeeded`` counts runs that computed their result; runs answered from
the cache computed nothing and are ``cache_hits`` (they still are successes: the newest success,
``last_success_*``, may be one). ``failed``, ``timed_out`` and ``cancelled`` count runs that
ended so; runs still going are in no count (the last run's status says so).

What "newest" means. Runs are ordered by submission (their id): a later request is on data at
least as new, so its result is the newer one even if an older run finished after it.

Runtimes. A run's runtime is its wall time from the start of its first attempt to its end
(retries and the waits between them included), as a cron VM would have timed the job; only
succeeded runs that computed their whole result have one. A cache hit computed nothing, and a
pipeline run that took some steps' results from the cache (a rerun ``--only publish``, or
``--from summarise``) computed only part of it: neither is the "current runtime" nor in the
mean; a row counts them apart (``cache_hits``, ``partial_runs``) so their absence is visible.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from modelrunner.errors import NotFound, SpecError
from modelrunner.spec.workspace import Schedule, Workspace
from modelrunner.store import export_queries
from modelrunner.store.export_queries import SCHEDULE_PREFIX, TRIGGER_PREFIX, GroupTally
from modelrunner.store.tables import RunRow

_DECIMALS = 3  # runtimes to the millisecond: finer is noise, and CSV files stay readable in diffs


@dataclass(frozen=True)
class Source:
    """What created a group's runs: a schedule item, a trigger, or nothing (on demand)."""

    schedule: str | None
    item: int | None
    trigger: str | None

    @classmethod
    def of(cls, origin_group: str) -> Source:
        if origin_group.startswith(SCHEDULE_PREFIX):
            name, _, item_text = origin_group.removeprefix(SCHEDULE_PREFIX).rpartition("#")
            if not name:  # an origin without an item number: the whole rest names the schedule
                name, item_text = item_text, ""
            return cls(name, int(item_text) if item_text.isdigit() else None, None)
        if origin_group.startswith(TRIGGER_PREFIX):
            return cls(None, None, origin_group.removeprefix(TRIGGER_PREFIX))
        return cls(None, None, None)

    @property
    def sort_key(self) -> tuple[int, str, int, str]:
        """On demand first, then schedule items (by name, item), then triggers."""
        if self.schedule is not None:
            return 1, self.schedule, -1 if self.item is None else self.item, ""
        if self.trigger is not None:
            return 2, "", -1, self.trigger
        return 0, "", -1, ""


class _ExportRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    model: str
    schedule: str | None = Field(description="`<model>/<schedule>` for a schedule item's runs; null otherwise")
    item: int | None = Field(description="The schedule item: index of the parameter set in the schedule")
    trigger: str | None = Field(description="`<model>/<trigger>` for a trigger's runs; null otherwise")


class StatusRow(_ExportRow):
    """Where one model's schedule item, trigger or on-demand runs stand."""

    params: dict[str, Any] | None = Field(
        description="Parameters of the newest run; for an item that never ran, as the schedule declares them"
    )
    last_run_id: int | None = Field(description="The newest run (by submission); null if none yet")
    last_status: str | None
    last_attempts: int | None = Field(
        description="Attempts of the newest run; 0 for a cache hit, and for a pipeline run (its steps have them)"
    )
    last_started_at: dt.datetime | None = Field(description="When the newest run's first attempt started")
    last_finished_at: dt.datetime | None = Field(description="When the newest run ended; null while it goes")
    last_error: str | None
    last_success_run_id: int | None = Field(description="The newest succeeded run, computed or a cache hit")
    last_success_at: dt.datetime | None = Field(description="When that run ended")
    succeeded: int = Field(description="Runs that computed their result successfully")
    cache_hits: int = Field(description="Runs answered from the cache (computed nothing)")
    failed: int
    timed_out: int
    cancelled: int


class RuntimeRow(_ExportRow):
    """Wall times (first start to end) of the computed succeeded runs of one row's runs."""

    runs: int = Field(description="Succeeded runs that computed their whole result; the mean is over these")
    current_run_id: int | None = Field(description="The newest computed succeeded run")
    current_runtime_s: float | None
    previous_run_id: int | None = Field(description="The computed succeeded run before it")
    previous_runtime_s: float | None
    change: float | None = Field(description="current_runtime_s / previous_runtime_s")
    mean_runtime_s: float | None
    cache_hits: int = Field(description="Succeeded runs answered from the cache: no runtime")
    partial_runs: int = Field(
        description="Succeeded pipeline runs that took some steps' results from the cache (partial reruns): "
        "not in the runtimes"
    )


def status_rows(
    session: Session, workspace: Workspace, *, model: str | None = None, schedule: str | None = None
) -> list[StatusRow]:
    """One row per (model, origin group) matching the filters, sorted by model, then on demand,
    schedule items, triggers. ``schedule`` is ``<model>/<schedule>`` or a bare schedule name (that
    schedule of any model); with it, only schedule items are rows. NotFound when a filter names
    a model or schedule that neither the workspace nor the store knows."""
    tallies = export_queries.tally_groups(session, model=model, schedule=schedule)
    declared = _declared_items(workspace, model, schedule)
    _check_known(session, workspace, model, schedule, found=bool(tallies), declared=bool(declared))
    last_ids = {t.last_run_id for t in tallies}
    success_ids = {t.last_success_id for t in tallies if t.last_success_id is not None}
    runs = export_queries.runs_by_id(session, last_ids | success_ids)
    attempts = export_queries.attempt_counts(session, last_ids)
    rows = {(t.model_name, t.origin_group): _status_row(t, runs, attempts) for t in tallies}
    for (model_name, origin_group), params in declared.items():
        if (model_name, origin_group) not in rows:
            rows[model_name, origin_group] = _never_run_row(model_name, origin_group, params)
    return [rows[key] for key in sorted(rows, key=_row_order)]


def runtime_rows(
    session: Session, workspace: Workspace, *, model: str | None = None, schedule: str | None = None
) -> list[RuntimeRow]:
    """The same rows as ``status_rows`` (same filters, order and NotFound), with runtimes in
    seconds; a row without a computed succeeded run has empty runtimes."""
    tallies = export_queries.tally_groups(session, model=model, schedule=schedule)
    declared = _declared_items(workspace, model, schedule)
    _check_known(session, workspace, model, schedule, found=bool(tallies), declared=bool(declared))
    means = {
        (t.model_name, t.origin_group): t
        for t in export_queries.tally_runtimes(session, model=model, schedule=schedule)
    }
    newest: dict[tuple[str, str], dict[int, export_queries.TimedRun]] = {}
    for timed in export_queries.newest_timed_runs(session, per_group=2, model=model, schedule=schedule):
        newest.setdefault((timed.model_name, timed.origin_group), {})[timed.rank] = timed
    partial = export_queries.count_partial_runs(session, model=model, schedule=schedule)
    hits = {(t.model_name, t.origin_group): t.cache_hits for t in tallies}
    keys = {(t.model_name, t.origin_group) for t in tallies} | set(declared)
    rows = []
    for key in sorted(keys, key=_row_order):
        model_name, origin_group = key
        source = Source.of(origin_group)
        mean = means.get(key)
        current, previous = newest.get(key, {}).get(1), newest.get(key, {}).get(2)
        current_s, previous_s = _runtime(current), _runtime(previous)
        rows.append(
            RuntimeRow(
                model=model_name,
                schedule=source.schedule,
                item=source.item,
                trigger=source.trigger,
                runs=mean.runs if mean else 0,
                current_run_id=current.id if current else None,
                current_runtime_s=current_s,
                previous_run_id=previous.id if previous else None,
                previous_runtime_s=previous_s,
                change=_ratio(current_s, previous_s),
                mean_runtime_s=round(mean.mean_seconds, _DECIMALS) if mean else None,
                cache_hits=hits.get(key, 0),
                partial_runs=partial.get(key, 0),
            )
        )
    return rows


def to_csv(rows: Sequence[BaseModel], row_type: type[BaseModel]) -> str:
    """CSV text with a header row (the fields of ``row_type``, in order) and one line per row.

    Cells: empty for null, timestamps ISO 8601 in UTC, objects as compact JSON with sorted keys
    (the same row gives the same line, so a file kept in git changes only where the data did).
    Lines end with ``\\n``, not the CSV default ``\\r\\n``: the files live in git on Unix hosts.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = list(row_type.model_fields)
    writer.writerow(columns)
    for row in rows:
        values = row.model_dump(mode="json")
        writer.writerow([_cell(values[column]) for column in columns])
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def _status_row(tally: GroupTally, runs: dict[int, RunRow], attempts: dict[int, int]) -> StatusRow:
    source = Source.of(tally.origin_group)
    last = runs[tally.last_run_id]
    success = runs.get(tally.last_success_id) if tally.last_success_id is not None else None
    return StatusRow(
        model=tally.model_name,
        schedule=source.schedule,
        item=source.item,
        trigger=source.trigger,
        params=last.params,
        last_run_id=last.id,
        last_status=last.status,
        last_attempts=attempts.get(last.id, 0),
        last_started_at=last.started_at,
        last_finished_at=last.finished_at,
        last_error=last.error,
        last_success_run_id=success.id if success else None,
        last_success_at=success.finished_at if success else None,
        succeeded=tally.succeeded,
        cache_hits=tally.cache_hits,
        failed=tally.failed,
        timed_out=tally.timed_out,
        cancelled=tally.cancelled,
    )


def _never_run_row(model_name: str, origin_group: str, params: dict[str, Any]) -> StatusRow:
    source = Source.of(origin_group)
    return StatusRow(
        model=model_name,
        schedule=source.schedule,
        item=source.item,
        trigger=source.trigger,
        params=params,
        last_run_id=None,
        last_status=None,
        last_attempts=None,
        last_started_at=None,
        last_finished_at=None,
        last_error=None,
        last_success_run_id=None,
        last_success_at=None,
        succeeded=0,
        cache_hits=0,
        failed=0,
        timed_out=0,
        cancelled=0,
    )


def _declared_items(
    workspace: Workspace, model: str | None, schedule: str | None
) -> dict[tuple[str, str], dict[str, Any]]:
    """(model, origin group) -> declared parameters of every item of the active schedules that
    match the filters."""
    return {
        (entry.model, f"{SCHEDULE_PREFIX}{entry.name}#{index}"): params
        for entry in workspace.schedules()
        if entry.active and _matches(entry, model, schedule)
        for index, params in enumerate(entry.spec.parameter_sets())
    }


def _matches(entry: Schedule, model: str | None, schedule: str | None) -> bool:
    if model is not None and entry.model != model:
        return False
    if schedule is None:
        return True
    return entry.name == schedule if "/" in schedule else entry.spec.name == schedule


def _check_known(
    session: Session, workspace: Workspace, model: str | None, schedule: str | None, *, found: bool, declared: bool
) -> None:
    """NotFound for a filter naming what neither the workspace nor the store knows. A model whose
    model.yaml is broken, or a model or schedule gone from the workspace that has runs, is known;
    filters that are known but match nothing together give no rows, not an error."""
    if found or declared:
        return
    if model is not None and not export_queries.has_runs(session, model=model):
        with contextlib.suppress(SpecError):  # a broken model.yaml still names a model
            workspace.model(model)  # NotFound if no model folder has this name
    if (
        schedule is not None
        and not export_queries.has_runs(session, schedule=schedule)
        and not any(_matches(entry, None, schedule) for entry in workspace.schedules())
    ):
        raise NotFound(f"unknown schedule '{schedule}'", schedule=schedule)


def _row_order(key: tuple[str, str]) -> tuple[str, tuple[int, str, int, str], str]:
    model_name, origin_group = key
    return model_name, Source.of(origin_group).sort_key, origin_group


def _runtime(run: export_queries.TimedRun | None) -> float | None:
    if run is None:
        return None
    return round((run.finished_at - run.started_at).total_seconds(), _DECIMALS)


def _ratio(current: float | None, previous: float | None) -> float | None:
    if current is None or not previous:
        return None
    return round(current / previous, _DECIMALS)
