"""The aggregate queries behind the status and runtime exports: one row per model and origin group.

Only top-level runs are read (kind ``run`` or ``pipeline``): a step run belongs to its pipeline
run. A rerun (origin ``rerun:<id>``) takes the origin of the run it computes again, following a
rerun of a rerun back to the first run. Every query groups in SQL, so the work done in Python is
per group, never per run. Callers pass the session (and so the transaction).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    CTE,
    BigInteger,
    ColumnElement,
    Float,
    Select,
    Subquery,
    Table,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from modelrunner.engine.states import RunStatus
from modelrunner.store.tables import AttemptRow, RunKind, RunRow

_runs: Table = RunRow.__table__  # type: ignore[assignment]
_attempts: Table = AttemptRow.__table__  # type: ignore[assignment]

SCHEDULE_PREFIX = "schedule:"
TRIGGER_PREFIX = "trigger:"
RERUN_PREFIX = "rerun:"
ON_DEMAND = ""
"""The origin group of every run that no schedule or trigger created (users, the API, and reruns
of such runs)."""


def _rerun_roots() -> CTE:
    """(run_id, origin): every rerun with the origin of each run up its chain of reruns, the
    last being the first run's. The walk ends: each step goes to a smaller run id."""
    parent = _runs.alias("rerun_parent")
    lineage = (
        select(_runs.c.id.label("run_id"), _runs.c.origin.label("origin"))
        .where(_runs.c.origin.like(f"{RERUN_PREFIX}%"))
        .cte("rerun_lineage", recursive=True)
    )
    # The CASE keeps PostgreSQL from casting an origin that is not a rerun's.
    parent_id = case(
        (
            lineage.c.origin.like(f"{RERUN_PREFIX}%"),
            cast(func.substr(lineage.c.origin, len(RERUN_PREFIX) + 1), BigInteger),
        )
    )
    step = select(lineage.c.run_id, parent.c.origin).join(parent, parent.c.id == parent_id)
    return lineage.union_all(step)


def _origin_group(origin: ColumnElement[str | None]) -> ColumnElement[str]:
    is_rule = or_(origin.like(f"{SCHEDULE_PREFIX}%"), origin.like(f"{TRIGGER_PREFIX}%"))
    return case((is_rule, origin), else_=literal(ON_DEMAND))


class _SecondsBetween(FunctionElement[float]):
    """``end - start`` in seconds, as a float; each database spells it its own way."""

    type = Float()
    name = "seconds_between"
    inherit_cache = True


@compiles(_SecondsBetween, "sqlite")
def _seconds_between_sqlite(element: _SecondsBetween, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"((julianday({end}) - julianday({start})) * 86400.0)"


@compiles(_SecondsBetween, "postgresql")
def _seconds_between_postgresql(element: _SecondsBetween, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"CAST(EXTRACT(EPOCH FROM ({end} - {start})) AS DOUBLE PRECISION)"


@dataclass(frozen=True)
class GroupTally:
    """What one (model, origin group) holds. ``origin_group`` is the origin of a schedule
    item's or a trigger's runs (a rerun's is that of the run it computes again), ``ON_DEMAND``
    otherwise. ``succeeded`` counts computed runs only; runs answered from the cache are
    ``cache_hits``."""

    model_name: str
    origin_group: str
    last_run_id: int
    last_success_id: int | None  # the newest succeeded run, computed or a cache hit
    succeeded: int
    cache_hits: int
    failed: int
    timed_out: int
    cancelled: int


@dataclass(frozen=True)
class RuntimeTally:
    """Wall time (first start to end) of the computed succeeded runs of one group."""

    model_name: str
    origin_group: str
    runs: int
    mean_seconds: float


@dataclass(frozen=True)
class TimedRun:
    """A computed succeeded run of a group; ``rank`` 1 is the group's newest, 2 the one before."""

    model_name: str
    origin_group: str
    rank: int
    id: int
    started_at: dt.datetime
    finished_at: dt.datetime


def _top_level_runs(model: str | None, schedule: str | None, *where: Any) -> Subquery:
    """Top-level runs with their origin group, narrowed to ``model`` and ``schedule``.

    Queries group and rank over this subquery's columns: PostgreSQL would refuse a GROUP BY of
    the CASE expression itself, its bound parameters being numbered apart from the selected twin's.
    """
    lineage = _rerun_roots()
    roots = (
        select(lineage.c.run_id, lineage.c.origin)
        # The first run's origin; one a person asked for (NULL) leaves no row: the rerun is on demand.
        .where(lineage.c.origin.not_like(f"{RERUN_PREFIX}%"))
        .subquery("rerun_roots")
    )
    origin = func.coalesce(roots.c.origin, _runs.c.origin)
    statement = (
        select(
            _runs.c.id,
            _runs.c.model_name,
            _origin_group(origin).label("origin_group"),
            _runs.c.status,
            _runs.c.cache_hit,
            _runs.c.started_at,
            _runs.c.finished_at,
        )
        .select_from(_runs.outerjoin(roots, roots.c.run_id == _runs.c.id))
        .where(_runs.c.kind.in_([RunKind.RUN, RunKind.PIPELINE]), *where)
    )
    if model is not None:
        statement = statement.where(_runs.c.model_name == model)
    if schedule is not None:
        statement = statement.where(origin.like(schedule_pattern(schedule), escape="\\"))
    return statement.subquery("top_level_runs")


def schedule_pattern(schedule: str) -> str:
    """The LIKE pattern of the origins of a schedule's runs: ``<model>/<schedule>`` names one
    schedule, a bare ``<schedule>`` that schedule of any model."""
    escaped = schedule.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    owner = "" if "/" in schedule else "%/"
    return f"{SCHEDULE_PREFIX}{owner}{escaped}#%"


def _count(condition: Any) -> Any:
    return func.count(case((condition, 1)))


def tally_groups(session: Session, *, model: str | None = None, schedule: str | None = None) -> list[GroupTally]:
    """One tally per (model, origin group) that has top-level runs, in no particular order."""
    runs = _top_level_runs(model, schedule)
    succeeded = runs.c.status == RunStatus.SUCCEEDED.value
    statement: Select[Any] = select(
        runs.c.model_name,
        runs.c.origin_group,
        func.max(runs.c.id),
        func.max(case((succeeded, runs.c.id))),
        _count(and_(succeeded, runs.c.cache_hit.is_(False))),
        _count(and_(succeeded, runs.c.cache_hit.is_(True))),
        _count(runs.c.status == RunStatus.FAILED.value),
        _count(runs.c.status == RunStatus.TIMED_OUT.value),
        _count(runs.c.status == RunStatus.CANCELLED.value),
    ).group_by(runs.c.model_name, runs.c.origin_group)
    return [GroupTally(*row) for row in session.execute(statement)]


def tally_runtimes(session: Session, *, model: str | None = None, schedule: str | None = None) -> list[RuntimeTally]:
    """Count and mean wall time of each group's computed succeeded runs (groups without one are
    left out)."""
    runs = _computed_successes(model, schedule)
    statement = select(
        runs.c.model_name,
        runs.c.origin_group,
        func.count(),
        func.avg(_SecondsBetween(runs.c.started_at, runs.c.finished_at)),
    ).group_by(runs.c.model_name, runs.c.origin_group)
    return [RuntimeTally(name, group, count, float(mean)) for name, group, count, mean in session.execute(statement)]


def newest_timed_runs(
    session: Session, *, per_group: int, model: str | None = None, schedule: str | None = None
) -> list[TimedRun]:
    """The ``per_group`` newest (by submission) computed succeeded runs of each group."""
    runs = _computed_successes(model, schedule)
    rank = (
        func.row_number()
        .over(partition_by=(runs.c.model_name, runs.c.origin_group), order_by=runs.c.id.desc())
        .label("rank")
    )
    ranked = select(
        runs.c.model_name, runs.c.origin_group, rank, runs.c.id, runs.c.started_at, runs.c.finished_at
    ).subquery("ranked")
    statement = select(ranked).where(ranked.c.rank <= per_group)
    return [TimedRun(*row) for row in session.execute(statement)]


def _computed_successes(model: str | None, schedule: str | None) -> Subquery:
    """Succeeded runs that computed their whole result: no cache hit, and no pipeline run that
    took some steps' results from the cache (a partial rerun such as ``--only publish``): their
    wall time is not what computing the model takes."""
    return _top_level_runs(
        model,
        schedule,
        _runs.c.status == RunStatus.SUCCEEDED.value,
        _runs.c.cache_hit.is_(False),
        _runs.c.started_at.is_not(None),
        _runs.c.finished_at.is_not(None),
        ~_reused_steps(),
    )


def _reused_steps() -> Any:
    """Whether a run (of ``_runs``) is a pipeline run with a step answered from the cache."""
    steps = _runs.alias("steps")
    return exists().where(steps.c.parent_id == _runs.c.id, steps.c.cache_hit.is_(True))


def count_partial_runs(
    session: Session, *, model: str | None = None, schedule: str | None = None
) -> dict[tuple[str, str], int]:
    """Per (model, origin group): the succeeded pipeline runs that took some steps' results from
    the cache (left out of runtimes); groups without one are left out."""
    runs = _top_level_runs(
        model, schedule, _runs.c.status == RunStatus.SUCCEEDED.value, _runs.c.cache_hit.is_(False), _reused_steps()
    )
    statement = select(runs.c.model_name, runs.c.origin_group, func.count()).group_by(
        runs.c.model_name, runs.c.origin_group
    )
    return {(name, group): count for name, group, count in session.execute(statement)}


def runs_by_id(session: Session, run_ids: Collection[int]) -> dict[int, RunRow]:
    if not run_ids:
        return {}
    return {row.id: row for row in session.scalars(select(RunRow).where(RunRow.id.in_(list(run_ids))))}


def attempt_counts(session: Session, run_ids: Collection[int]) -> dict[int, int]:
    """How many attempts each of these runs has had (runs without any are left out)."""
    if not run_ids:
        return {}
    statement = (
        select(_attempts.c.run_id, func.count())
        .where(_attempts.c.run_id.in_(list(run_ids)))
        .group_by(_attempts.c.run_id)
    )
    return {run_id: count for run_id, count in session.execute(statement)}


def has_runs(session: Session, *, model: str | None = None, schedule: str | None = None) -> bool:
    """Whether any top-level run matches the filters."""
    runs = _top_level_runs(model, schedule)
    return session.execute(select(runs.c.id).limit(1)).first() is not None
