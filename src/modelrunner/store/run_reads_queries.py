"""The queries of the read-model for runs (engine/run_reads.py) that select only what a reader
shows: lists of runs without the columns no list shows, and one output by its path."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, cast, exists, func, literal, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from modelrunner.store.tables import OutputRow, RunRow, UserRow

_runs: Table = RunRow.__table__  # type: ignore[assignment]


ParamValue = str | int | float | bool
"""A single parameter value a list of runs can be filtered by (never a list or an object)."""


@dataclass(frozen=True)
class RunFilter:
    """Which runs a list holds, newest first: the step runs of ``parent_id``, or without it the
    runs that are not steps of a pipeline; ``models`` None means every model's. ``submitter`` is
    a user's name; ``params`` holds parameter name -> the value it must have (of the same JSON
    type: 2 matches 2.0, the text "2" does not); ``since`` and ``until`` bound when a run was
    submitted (``since`` included, ``until`` not)."""

    model: str | None = None
    models: Collection[str] | None = None
    parent_id: int | None = None
    statuses: Collection[str] = ()
    before_id: int | None = None
    submitter: str | None = None
    backend: str | None = None
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    since: dt.datetime | None = None
    until: dt.datetime | None = None

    def where(self, dialect: str) -> list[ColumnElement[bool]]:
        """The clauses of this filter in the SQL of ``dialect`` (``sqlite`` or ``postgresql``)."""
        clauses = [_runs.c.parent_id == self.parent_id if self.parent_id is not None else _runs.c.parent_id.is_(None)]
        if self.models is not None:
            clauses.append(_runs.c.model_name.in_(list(self.models)))
        if self.model is not None:
            clauses.append(_runs.c.model_name == self.model)
        if self.statuses:
            clauses.append(_runs.c.status.in_(list(self.statuses)))
        if self.before_id is not None:
            clauses.append(_runs.c.id < self.before_id)
        if self.submitter is not None:
            clauses.append(_runs.c.submitted_by.in_(select(UserRow.id).where(UserRow.name == self.submitter)))
        if self.backend is not None:
            clauses.append(_runs.c.backend == self.backend)
        if self.since is not None:
            clauses.append(_runs.c.created_at >= self.since)
        if self.until is not None:
            clauses.append(_runs.c.created_at < self.until)
        clauses += [_param_is(dialect, name, value) for name, value in self.params.items()]
        return clauses


def _param_is(dialect: str, name: str, value: ParamValue) -> ColumnElement[bool]:
    """The run's parameter ``name`` is ``value``: equal, and of the same JSON type."""
    if dialect == "postgresql":
        # jsonb equality compares numbers as numbers and never mixes types; ``->`` takes the
        # name as a bound value, whatever characters it holds.
        return cast(_runs.c.params[name], JSONB) == cast(literal(json.dumps(value)), JSONB)
    # SQLite: json_each names each member's JSON type, and its atom is the SQL value to compare.
    member = func.json_each(_runs.c.params).table_valued("key", "type", "atom")
    if isinstance(value, bool):
        matches = [member.c.type == ("true" if value else "false")]
    elif isinstance(value, str):
        matches = [member.c.type == "text", member.c.atom == value]
    else:
        matches = [member.c.type.in_(["integer", "real"]), member.c.atom == value]
    return exists().where(member.c.key == name, *matches)


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
    """A run as a page names it: the models page's last run of each model."""

    id: int
    model_name: str
    status: str
    cache_hit: bool
    created_at: dt.datetime
    finished_at: dt.datetime | None


_HEADLINE_COLUMNS = [_runs.c[name] for name in RunHeadline.__dataclass_fields__]


@dataclass(frozen=True)
class RunLine(RunHeadline):
    """A run as a page's list of runs shows it: with its parameters, which tell runs apart."""

    params: dict[str, Any]


_LINE_COLUMNS = [_runs.c[name] for name in RunLine.__dataclass_fields__]


def _newest(session: Session, columns: list[Any], which: RunFilter, limit: int) -> Select[Any]:
    clauses = which.where(session.get_bind().dialect.name)
    return select(*columns).where(*clauses).order_by(_runs.c.id.desc()).limit(limit)


def listed_runs(session: Session, which: RunFilter, limit: int) -> list[ListedRun]:
    """At most ``limit`` runs, newest first."""
    return [ListedRun(*row) for row in session.execute(_newest(session, _LISTED_COLUMNS, which, limit))]


def run_lines(session: Session, which: RunFilter, limit: int) -> list[RunLine]:
    """At most ``limit`` runs, newest first."""
    return [RunLine(*row) for row in session.execute(_newest(session, _LINE_COLUMNS, which, limit))]


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
