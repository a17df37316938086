"""The queries of the read-model for runs (engine/run_reads.py) that select only what a reader
shows: lists of runs without the columns no list shows, and one output by its path."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, func, select
from sqlalchemy.orm import Session

from modelrunner.store.tables import OutputRow, RunRow, UserRow

_runs: Table = RunRow.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class RunFilter:
    """Which runs a list holds, newest first: the step runs of ``parent_id``, or without it the
    runs that are not steps of a pipeline; ``models`` None means every model's."""

    model: str | None = None
    models: Collection[str] | None = None
    parent_id: int | None = None
    statuses: Collection[str] = ()
    before_id: int | None = None

    def where(self) -> list[ColumnElement[bool]]:
        clauses = [_runs.c.parent_id == self.parent_id if self.parent_id is not None else _runs.c.parent_id.is_(None)]
        if self.models is not None:
            clauses.append(_runs.c.model_name.in_(list(self.models)))
        if self.model is not None:
            clauses.append(_runs.c.model_name == self.model)
        if self.statuses:
            clauses.append(_runs.c.status.in_(list(self.statuses)))
        if self.before_id is not None:
            clauses.append(_runs.c.id < self.before_id)
        return clauses


@dataclass(frozen=True)
class ListedRun:
    """A run as the API lists it: every column of the run but its pipeline plan."""

    id: int
    kind: str
    parent_id: int | None
    step: str | None
    item_key: str | None
    item: Any
    origin: str | None
    submitted_by: int | None
    backend: str
    backend_rule: str
    model_name: str
    model_version: str
    params: dict[str, Any]
    inputs: dict[str, Any]
    cache_key: str
    status: str
    cache_hit: bool
    source_run_id: int | None
    progress_fraction: float | None
    progress_message: str | None
    error: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


_LISTED_COLUMNS = [_runs.c[name] for name in ListedRun.__dataclass_fields__]


@dataclass(frozen=True)
class RunHeadline:
    """A run as a page's list of runs shows it (no parameters, no inputs)."""

    id: int
    model_name: str
    status: str
    cache_hit: bool
    created_at: dt.datetime
    finished_at: dt.datetime | None


_HEADLINE_COLUMNS = [_runs.c[name] for name in RunHeadline.__dataclass_fields__]


def _newest(columns: list[Any], which: RunFilter, limit: int) -> Select[Any]:
    return select(*columns).where(*which.where()).order_by(_runs.c.id.desc()).limit(limit)


def listed_runs(session: Session, which: RunFilter, limit: int) -> list[ListedRun]:
    """At most ``limit`` runs, newest first."""
    return [ListedRun(*row) for row in session.execute(_newest(_LISTED_COLUMNS, which, limit))]


def run_headlines(session: Session, which: RunFilter, limit: int) -> list[RunHeadline]:
    """At most ``limit`` runs, newest first."""
    return [RunHeadline(*row) for row in session.execute(_newest(_HEADLINE_COLUMNS, which, limit))]


def latest_runs(session: Session, models: Collection[str]) -> dict[str, RunHeadline]:
    """Model name -> its newest run that is not a pipeline's step, for those of ``models`` that
    have one (one statement for every model)."""
    if not models:
        return {}
    newest = (
        select(func.max(_runs.c.id))
        .where(_runs.c.parent_id.is_(None), _runs.c.model_name.in_(list(models)))
        .group_by(_runs.c.model_name)
    )
    rows = session.execute(select(*_HEADLINE_COLUMNS).where(_runs.c.id.in_(newest)))
    return {headline.model_name: headline for headline in (RunHeadline(*row) for row in rows)}


def output_at(session: Session, run_id: int, path: str) -> OutputRow | None:
    return session.get(OutputRow, (run_id, path))


def user_names(session: Session, user_ids: Collection[int]) -> dict[int, str]:
    """User id -> name of these users (of those that exist)."""
    if not user_ids:
        return {}
    rows = session.execute(select(UserRow.id, UserRow.name).where(UserRow.id.in_(list(user_ids))))
    return {user_id: name for user_id, name in rows}
