"""The read-model for runs: everything the API, the web pages and (through the API) the CLI show
of runs, read here and nowhere else.

Each function that reads one run takes the caller's ``RunPermission`` and checks it in the same
read transaction as the read itself, so the permission is decided on the very run that is shown
(a caller without a grant learns nothing, exactly as ``permitted_run`` says). Lists take the
caller's ``Access`` and hold only runs of models the caller may view.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from modelrunner.artifacts.logs import LogPage
from modelrunner.auth.access import Access
from modelrunner.auth.run_access import RunPermission, permitted_run, require_cancel
from modelrunner.clock import utcnow
from modelrunner.engine import pipelines
from modelrunner.engine.pipelines import StepState
from modelrunner.errors import InvalidInput, NotFound
from modelrunner.spec.access_spec import Level
from modelrunner.spec.duration import parse_duration
from modelrunner.spec.model_spec import ModelSpec
from modelrunner.store import partial_output_queries, queries, run_reads_queries
from modelrunner.store.row_ids import INT64_MAX
from modelrunner.store.run_reads_queries import ListedRun, ParamValue, RunFilter, RunHeadline, RunLine
from modelrunner.store.tables import AttemptRow, EventRow, OutputRow, PartialOutputRow, RunKind, RunRow

if TYPE_CHECKING:
    from modelrunner.platform import Platform


@dataclass(frozen=True)
class RunBundle:
    """A run with everything its detail shows."""

    run: RunRow
    attempts: list[AttemptRow]
    outputs: list[OutputRow]
    submitter: str | None  # the name of the user who submitted it; None for a schedule's or a trigger's
    steps: list[StepState] | None  # for a pipeline run read with its steps: its steps, in order
    # Attempt number -> what that attempt (failed, timed out, cancelled) left: never the result.
    partial_outputs: dict[int, list[PartialOutputRow]] = field(default_factory=dict)


@dataclass(frozen=True)
class RunListing:
    """A page of runs, newest first, with the names of their submitters."""

    runs: list[ListedRun]
    submitters: dict[int, str]  # user id -> name
    more: bool  # older runs follow


@dataclass(frozen=True)
class RunLog:
    """A part of a run's log, and the run's status when it was read."""

    status: str
    page: LogPage


@dataclass(frozen=True)
class RunProgress:
    """What a page following a run needs at one moment: the run, its attempts and the next part
    of its log."""

    run: RunRow
    attempts: list[AttemptRow]
    log: LogPage


@dataclass(frozen=True)
class PipelineProgress:
    """A pipeline run's steps as its step runs show them. A pipeline answered from the cache has
    no steps of its own: these are those of the run that computed its result (of the same model,
    so visible to whoever sees this one)."""

    spec: ModelSpec
    states: list[StepState]
    children: list[queries.ChildRun]


def checked_run(platform: Platform, permission: RunPermission, doing: str) -> RunRow:
    """The run, once the caller may do ``doing`` with it."""
    with platform.database.read() as session:
        return permitted_run(session, permission, doing)


def run_to_cancel(platform: Platform, permission: RunPermission) -> RunRow:
    """The run, once the caller may cancel it: ``run`` on the model cancels one's own runs,
    ``admin`` anyone's."""
    run = checked_run(platform, permission, "cancelling a run")
    require_cancel(permission.access, run)
    return run


def run_detail(platform: Platform, permission: RunPermission, *, with_steps: bool = False) -> RunBundle:
    """The run with its attempts, outputs and submitter; ``with_steps`` adds a pipeline run's
    steps (the recorded model version's spec decides them)."""
    with platform.database.read() as session:
        run = permitted_run(session, permission, "viewing a run")
        steps = None
        if with_steps and run.kind == RunKind.PIPELINE:
            spec = platform.catalog.get(session, run.model_name, run.model_version).spec
            steps = pipelines.step_states(session, run, spec)
        return RunBundle(
            run,
            queries.attempts_of(session, run.id),
            queries.outputs_of(session, run.id),
            _submitter(session, run),
            steps,
            partial_output_queries.partial_outputs_of_run(session, run.id),
        )


def list_runs(platform: Platform, access: Access, which: RunFilter, limit: int) -> RunListing:
    """At most ``limit`` runs of ``which`` among the models the caller may view (naming a model
    the caller may not view is refused), newest first."""
    doing = "listing runs"
    access.require_listing(doing)
    if which.model is not None:
        access.require(which.model, Level.VIEW, doing)
    with platform.database.read() as session:
        if not access.sees_every_model():
            which = replace(which, models=access.visible(queries.model_names(session)))
        runs = run_reads_queries.listed_runs(session, which, limit + 1)
        shown = runs[:limit]
        submitters = run_reads_queries.user_names(
            session, {r.submitted_by for r in shown if r.submitted_by is not None}
        )
    return RunListing(shown, submitters, len(runs) > limit)


def param_filters(texts: Iterable[str]) -> dict[str, ParamValue]:
    """``name=value`` texts as a filter of runs by their parameters (``RunFilter.params``). A value
    that reads as a JSON number, ``true`` or ``false``, or a "quoted text", is that; any other
    value is the text as given (``region=north``). InvalidInput for a text without a name."""
    found: dict[str, ParamValue] = {}
    for text in texts:
        name, equals, value = text.partition("=")
        if not equals or not name.strip():
            raise InvalidInput(
                f"param: '{text}' is not name=value (e.g. region=north or r0=2.5)", field="param", location="query"
            )
        found[name.strip()] = _param_value(value.strip())
    return found


def moment(text: str, name: str, now: dt.datetime | None = None) -> dt.datetime:
    """A bound of a list of runs (``since``, ``until``) as given: a duration back from ``now``
    (``2d``, ``12h``, ``90m``) or a date or date and time (``2026-12-01``, ``2026-12-01T08:30``;
    UTC unless it names a zone). InvalidInput naming ``name`` for anything else."""
    try:
        return (now or utcnow()) - dt.timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"{name}: '{text}' is neither a duration back from now (2d, 12h, 30m) nor a date or time "
            "(2026-12-01, 2026-12-01T08:30)",
            field=name,
            location="query",
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _param_value(text: str) -> ParamValue:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, str):
        if not _storable(value):
            raise InvalidInput(f"param: {text} holds a character no parameter can", field="param", location="query")
        return value
    if isinstance(value, bool):
        return value
    # What a stored parameter can hold: a finite number (JSON has no NaN), an integer of 64 bits.
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, int) and abs(value) <= INT64_MAX:
        return value
    return text


def _storable(text: str) -> bool:
    """Whether a store takes ``text`` in a query: no U+0000 (PostgreSQL refuses it) and no lone
    surrogate (a JSON escape can make one; it is no UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def recent_runs(
    platform: Platform, access: Access, model: str, limit: int, doing: str, statuses: Collection[str] = ()
) -> list[RunLine]:
    """At most ``limit`` runs of ``model`` that are not pipeline steps, newest first, as a page
    lists them; the caller must be able to view the model."""
    access.require(model, Level.VIEW, doing)
    with platform.database.read() as session:
        return run_reads_queries.run_lines(session, RunFilter(model=model, statuses=statuses), limit)


def latest_runs(platform: Platform, access: Access, models: list[str]) -> dict[str, RunHeadline]:
    """Model name -> its newest run, for the models among ``models`` the caller may view."""
    with platform.database.read() as session:
        return run_reads_queries.latest_runs(session, access.visible(models))


def run_log(platform: Platform, permission: RunPermission, offset: int | None, limit: int) -> RunLog:
    """At most ``limit`` bytes of the run's log from ``offset`` (None: its last ``limit`` bytes)."""
    run = checked_run(platform, permission, "reading a run's log")
    return RunLog(run.status, log_page(platform, run, offset, limit))


def log_page(platform: Platform, run: RunRow, offset: int | None, limit: int) -> LogPage:
    """At most ``limit`` bytes of ``run``'s log from ``offset`` (None: its last ``limit`` bytes).
    A cache hit shows the log of the run that computed its result."""
    logged = run.source_run_id if run.cache_hit and run.source_run_id is not None else run.id
    if offset is None:
        offset = max(0, platform.logs.size(logged) - limit)
    return platform.logs.read(logged, offset, limit)


def run_progress(platform: Platform, permission: RunPermission, offset: int, limit: int) -> RunProgress:
    """The run, its attempts, and at most ``limit`` bytes of its log from ``offset``."""
    with platform.database.read() as session:
        run = permitted_run(session, permission, "following a run")
        attempts = queries.attempts_of(session, run.id)
    return RunProgress(run, attempts, log_page(platform, run, offset, limit))


def run_events(platform: Platform, permission: RunPermission, after: int, limit: int) -> list[EventRow]:
    """At most ``limit`` of the run's events after the event ``after``, oldest first."""
    with platform.database.read() as session:
        run = permitted_run(session, permission, "reading a run's events")
        return queries.events_of(session, run.id, after, limit)


def run_outputs(platform: Platform, permission: RunPermission, doing: str) -> tuple[RunRow, list[OutputRow]]:
    """The run and its outputs, by path."""
    with platform.database.read() as session:
        run = permitted_run(session, permission, doing)
        return run, queries.outputs_of(session, run.id)


def run_output(platform: Platform, permission: RunPermission, path: str) -> OutputRow:
    """The run's output at ``path`` (NotFound when it has none there)."""
    with platform.database.read() as session:
        run = permitted_run(session, permission, "downloading a run's outputs")
        found = run_reads_queries.output_at(session, run.id, path)
    if found is None:
        raise NotFound(f"run {run.id} has no output '{path}'", run=run.id, path=path)
    return found


def attempt_partial_outputs(
    platform: Platform, permission: RunPermission, number: int
) -> tuple[RunRow, list[PartialOutputRow]]:
    """The run and the partial outputs of its attempt ``number`` by path (NotFound when the run
    has no such attempt)."""
    with platform.database.read() as session:
        run = permitted_run(session, permission, "listing an attempt's partial outputs")
        attempt_id = _attempt_id(session, run, number)
        return run, partial_output_queries.partial_outputs_of(session, attempt_id)


def attempt_partial_output(platform: Platform, permission: RunPermission, number: int, path: str) -> PartialOutputRow:
    """The partial output at ``path`` of the run's attempt ``number`` (NotFound when there is none)."""
    with platform.database.read() as session:
        run = permitted_run(session, permission, "downloading an attempt's partial outputs")
        found = partial_output_queries.partial_output_at(session, _attempt_id(session, run, number), path)
    if found is None:
        raise NotFound(
            f"attempt {number} of run {run.id} has no partial output '{path}'", run=run.id, attempt=number, path=path
        )
    return found


def _attempt_id(session: Session, run: RunRow, number: int) -> int:
    # Attempt numbers are 32-bit in the store: a larger one names no attempt (and must not reach it).
    attempt_id = partial_output_queries.attempt_id_of(session, run.id, number) if 0 < number < 2**31 else None
    if attempt_id is None:
        raise NotFound(f"run {run.id} has no attempt {number}", run=run.id, attempt=number)
    return attempt_id


def pipeline_progress(platform: Platform, permission: RunPermission) -> tuple[RunRow, PipelineProgress | None]:
    """The run and, for a pipeline run, its steps' states and step runs (None for any other run)."""
    with platform.database.read() as session:
        run = permitted_run(session, permission, "viewing a run")
        return run, _pipeline_progress(platform, session, run)


def _pipeline_progress(platform: Platform, session: Session, run: RunRow) -> PipelineProgress | None:
    if run.kind != RunKind.PIPELINE:
        return None
    computed = run
    if run.cache_hit and run.source_run_id is not None:
        computed = queries.get_run(session, run.source_run_id) or run
    spec = platform.catalog.get(session, computed.model_name, computed.model_version).spec
    return PipelineProgress(
        spec, pipelines.step_states(session, computed, spec), queries.children_of(session, computed.id)
    )


def _submitter(session: Session, run: RunRow) -> str | None:
    if run.submitted_by is None:
        return None
    return run_reads_queries.user_names(session, {run.submitted_by}).get(run.submitted_by)
