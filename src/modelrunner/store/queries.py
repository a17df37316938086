"""Every query modelrunner runs, by name. Callers pass the session (and so the transaction)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, bindparam, case, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from modelrunner.engine.states import ACTIVE_ATTEMPT_STATES, ACTIVE_RUN_STATES, AttemptStatus, RunStatus
from modelrunner.store.prepared import PreparedStatement, among
from modelrunner.store.tables import AttemptRow, EventRow, ModelVersionRow, OutputRow, RunKind, RunRow, UserRow

# The hot paths of the dispatcher use Core statements on these tables: no ORM bookkeeping.
_runs: Table = RunRow.__table__  # type: ignore[assignment]
_attempts: Table = AttemptRow.__table__  # type: ignore[assignment]
_outputs: Table = OutputRow.__table__  # type: ignore[assignment]
_events: Table = EventRow.__table__  # type: ignore[assignment]
_ACTIVE_ATTEMPTS = [s.value for s in ACTIVE_ATTEMPT_STATES]
_ACTIVE_RUNS = [s.value for s in ACTIVE_RUN_STATES]
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

# Statements on the paths every run takes are built once, with bind parameters, and run on the
# driver's cursor (store/prepared.py): building, keying and executing a statement through
# SQLAlchemy costs several times more than SQLite spends on it.
_LOCK_RUN_STATUS = PreparedStatement(select(_runs.c.status).where(_runs.c.id == bindparam("run_id")).with_for_update())
# Most submits find no such run: the row is loaded only for the one found.
_ACTIVE_RUN_FOR_KEY = PreparedStatement(
    select(_runs.c.id).where(_runs.c.cache_key == bindparam("key"), among(_runs.c.status, _ACTIVE_RUNS))
)
_LATEST_COMPUTED_SUCCESS = PreparedStatement(
    select(_runs.c.id)
    .where(
        _runs.c.cache_key == bindparam("key"),
        _runs.c.cache_hit.is_(False),
        _runs.c.status == RunStatus.SUCCEEDED.value,
        _runs.c.finished_at >= bindparam("after", type_=_runs.c.finished_at.type),
    )
    .order_by(_runs.c.finished_at.desc())
    .limit(1)
)
_run_inserts: dict[frozenset[str], PreparedStatement] = {}
_DEFAULTED_RUN_COLUMNS = ("kind", "inputs", "cache_hit", "slots", "backend", "backend_rule")
_QUEUED_RUNS = PreparedStatement(
    select(
        _runs.c.id,
        _runs.c.model_name,
        _runs.c.model_version,
        _runs.c.params,
        _runs.c.slots,
        _runs.c.inputs,
        _runs.c.step,
        _runs.c.item_key,
        _runs.c.item,
        _runs.c.plan,
    )
    .where(_runs.c.backend == bindparam("backend"), _runs.c.status == RunStatus.QUEUED.value)
    .order_by(_runs.c.id)
    .limit(bindparam("limit"))
)
_SET_RUN_PROGRESS = PreparedStatement(
    update(_runs)
    .where(_runs.c.id == bindparam("run_id"), among(_runs.c.status, [RunStatus.STARTING, RunStatus.RUNNING]))
    .values(progress_fraction=bindparam("fraction"), progress_message=bindparam("message"))
)
_ATTEMPT_STATUS = PreparedStatement(
    select(_attempts.c.run_id, _attempts.c.status).where(_attempts.c.id == bindparam("attempt_id"))
)
_COUNT_ATTEMPTS = select(func.count()).select_from(_attempts).where(_attempts.c.run_id == bindparam("run_id"))
_COUNT_ATTEMPTS_IN = _COUNT_ATTEMPTS.where(_attempts.c.status.in_(bindparam("statuses", expanding=True)))
_EVENT_COLUMNS = ("run_id", "type", "data", "created_at")
_INSERT_EVENT = PreparedStatement(insert(_events), columns=_EVENT_COLUMNS)
_attempt_inserts: dict[frozenset[str], PreparedStatement] = {}
_attempt_tallies: dict[frozenset[str], PreparedStatement] = {}
_run_updates: dict[tuple[frozenset[str], frozenset[str]], PreparedStatement] = {}
_attempt_updates: dict[frozenset[str], PreparedStatement] = {}


def _run_update(columns: frozenset[str], allowed: frozenset[str]) -> PreparedStatement:
    """The compare-and-set update of these run columns from these statuses (one statement per
    pair, built once: the few statuses are written into it)."""
    statement = _run_updates.get((columns, allowed))
    if statement is None:
        assignments: dict[str, Any] = {name: bindparam(f"v_{name}", type_=_runs.c[name].type) for name in columns}
        if "started_at" in columns:  # a run retried keeps the start of its first attempt
            assignments["started_at"] = func.coalesce(_runs.c.started_at, assignments["started_at"])
        statement = _run_updates[(columns, allowed)] = PreparedStatement(
            update(_runs).where(_runs.c.id == bindparam("run_id"), among(_runs.c.status, allowed)).values(**assignments)
        )
    return statement


def _attempt_update(columns: frozenset[str]) -> PreparedStatement:
    """The compare-and-set update of these attempt columns (one statement per set, built once)."""
    statement = _attempt_updates.get(columns)
    if statement is None:
        assignments = {name: bindparam(f"v_{name}", type_=_attempts.c[name].type) for name in columns}
        statement = _attempt_updates[columns] = PreparedStatement(
            update(_attempts)
            .where(_attempts.c.id == bindparam("attempt_id"), _attempts.c.status == bindparam("from_status"))
            .values(**assignments)
            .returning(_attempts.c.run_id, _attempts.c.number)
        )
    return statement


def _values(values: dict[str, Any]) -> dict[str, Any]:
    return {f"v_{name}": value for name, value in values.items()}


# --- model versions ---------------------------------------------------------------------------


def get_model_version(session: Session, name: str, version: str) -> ModelVersionRow | None:
    return session.get(ModelVersionRow, (name, version))


def add_model_version(session: Session, row: ModelVersionRow) -> None:
    session.add(row)


# --- runs ---------------------------------------------------------------------------------------


def get_run(session: Session, run_id: int) -> RunRow | None:
    return session.get(RunRow, run_id)


def lock_run_status(session: Session, run_id: int) -> str | None:
    """The run's status, its row locked for this transaction (SQLite's BEGIN IMMEDIATE already
    serialises writers); None if there is no such run."""
    row = _LOCK_RUN_STATUS.first(session, {"run_id": run_id})
    return row[0] if row else None


def add_run(session: Session, row: RunRow) -> RunRow:
    """Insert the run (a Core insert: no ORM flush on the submit path); ``row`` gets its id."""
    values = {column.key: getattr(row, column.key) for column in _runs.columns if column.key != "id"}
    for column in _DEFAULTED_RUN_COLUMNS:
        if values[column] is None:
            del values[column]  # the insert fills in the column's default
    columns = frozenset(values)
    statement = _run_inserts.get(columns)
    if statement is None:
        statement = _run_inserts[columns] = PreparedStatement(insert(_runs).returning(_runs.c.id), sorted(columns))
    returned = statement.first(session, values)
    assert returned is not None, "an INSERT ... RETURNING returns its row"
    row.id = int(returned[0])
    row.kind = row.kind or RunKind.RUN
    row.backend = row.backend or "local"
    row.backend_rule = row.backend_rule or "workspace"
    return row


def active_run_for_key(session: Session, cache_key: str) -> RunRow | None:
    found = _ACTIVE_RUN_FOR_KEY.first(session, {"key": cache_key})
    return session.get(RunRow, found[0]) if found else None


def latest_computed_success(session: Session, cache_key: str, finished_after: dt.datetime | None) -> RunRow | None:
    """The newest run that computed (not copied from the cache) this key successfully."""
    found = _LATEST_COMPUTED_SUCCESS.first(session, {"key": cache_key, "after": finished_after or _EPOCH})
    return session.get(RunRow, found[0]) if found else None


def list_runs(
    session: Session,
    *,
    model: str | None,
    statuses: Collection[str],
    before_id: int | None,
    limit: int,
    parent_id: int | None = None,
    models: Collection[str] | None = None,
) -> list[RunRow]:
    """Newest first; ``before_id`` continues a previous page. The step runs of ``parent_id``,
    or, without it, the runs that are not steps of a pipeline. ``models`` limits them to those
    models' runs."""
    statement = select(RunRow)
    if models is not None:
        statement = statement.where(RunRow.model_name.in_(list(models)))
    if parent_id is not None:
        statement = statement.where(RunRow.parent_id == parent_id)
    else:
        statement = statement.where(RunRow.parent_id.is_(None))
    if model is not None:
        statement = statement.where(RunRow.model_name == model)
    if statuses:
        statement = statement.where(RunRow.status.in_(list(statuses)))
    if before_id is not None:
        statement = statement.where(RunRow.id < before_id)
    return list(session.scalars(statement.order_by(RunRow.id.desc()).limit(limit)))


def model_names(session: Session) -> list[str]:
    """The name of every model that was ever submitted, sorted."""
    return list(session.scalars(select(ModelVersionRow.name).distinct().order_by(ModelVersionRow.name)))


@dataclass(frozen=True)
class QueuedRun:
    id: int
    model_name: str
    model_version: str
    params: dict[str, Any]
    slots: int
    inputs: dict[str, Any]
    step: str | None
    item_key: str | None
    item: Any
    plan: dict[str, Any] | None


def queued_runs(session: Session, backend: str, limit: int) -> list[QueuedRun]:
    """The oldest queued runs routed to ``backend`` (its name), first come first served."""
    return [QueuedRun(*row) for row in _QUEUED_RUNS.rows(session, {"backend": backend, "limit": limit})]


def queued_counts_by_backend(session: Session) -> dict[str, int]:
    """Backend name -> how many runs wait in its queue."""
    statement = (
        select(_runs.c.backend, func.count()).where(_runs.c.status == RunStatus.QUEUED.value).group_by(_runs.c.backend)
    )
    return {backend: int(count) for backend, count in session.execute(statement)}


def oldest_queued_by_backend(session: Session) -> dict[str, dt.datetime]:
    """Backend name -> when the oldest run waiting in its queue was submitted. Reads only the
    queued runs (the status index), however long the history."""
    statement = (
        select(_runs.c.backend, func.min(_runs.c.created_at))
        .where(_runs.c.status == RunStatus.QUEUED.value)
        .group_by(_runs.c.backend)
    )
    return {backend: created for backend, created in session.execute(statement)}


def active_attempt_counts_by_backend(session: Session) -> dict[str, int]:
    """Backend name -> how many of its attempts are starting or running."""
    statement = (
        select(_attempts.c.backend, func.count())
        .where(_attempts.c.status.in_(_ACTIVE_ATTEMPTS))
        .group_by(_attempts.c.backend)
    )
    return {backend: int(count) for backend, count in session.execute(statement)}


def active_runs_using_dataset(session: Session, dataset: str) -> list[int]:
    """Ids of the unfinished runs computed on some version of ``dataset``."""
    # Unfinished runs are few; reading their inputs here keeps the JSON out of SQL, where SQLite
    # and PostgreSQL spell it differently.
    rows = session.execute(select(_runs.c.id, _runs.c.inputs).where(_runs.c.status.in_(_ACTIVE_RUNS)))
    return [run_id for run_id, inputs in rows if any(i.get("dataset") == dataset for i in (inputs or {}).values())]


@dataclass(frozen=True)
class ChildRun:
    """What advancing a pipeline needs to know of one of its step runs."""

    id: int
    step: str
    item_key: str | None
    status: str
    progress: float | None
    error: str | None

    @classmethod
    def of(cls, row: RunRow) -> ChildRun:
        assert row.step is not None
        return cls(row.id, row.step, row.item_key, row.status, row.progress_fraction, row.error)


_CHILDREN_OF = (
    select(_runs.c.id, _runs.c.step, _runs.c.item_key, _runs.c.status, _runs.c.progress_fraction, _runs.c.error)
    .where(_runs.c.parent_id == bindparam("parent_id"))
    .order_by(_runs.c.id)
)


def children_of(session: Session, parent_id: int) -> list[ChildRun]:
    """The step runs of a pipeline run, oldest first."""
    return [ChildRun(*row) for row in session.execute(_CHILDREN_OF, {"parent_id": parent_id})]


def active_children(session: Session, parent_id: int) -> list[int]:
    statement = select(_runs.c.id).where(_runs.c.parent_id == parent_id, _runs.c.status.in_(_ACTIVE_RUNS))
    return list(session.scalars(statement))


def active_pipelines(session: Session) -> list[tuple[int, str, str]]:
    """(id, model, model version) of every pipeline run still going."""
    statement = (
        select(_runs.c.id, _runs.c.model_name, _runs.c.model_version)
        .where(_runs.c.status == RunStatus.RUNNING.value, _runs.c.kind == RunKind.PIPELINE)
        .order_by(_runs.c.id)
    )
    return [(row.id, row.model_name, row.model_version) for row in session.execute(statement)]


@dataclass(frozen=True)
class RunIdentity:
    """What an event about a run says of it."""

    model_name: str
    kind: str
    step: str | None
    item_key: str | None
    item: Any
    parent_id: int | None
    params: dict[str, Any]
    origin: str | None


_RUN_IDENTITY = PreparedStatement(
    select(
        _runs.c.model_name,
        _runs.c.kind,
        _runs.c.step,
        _runs.c.item_key,
        _runs.c.item,
        _runs.c.parent_id,
        _runs.c.params,
        _runs.c.origin,
    ).where(_runs.c.id == bindparam("run_id"))
)


def run_identity(session: Session, run_id: int) -> RunIdentity | None:
    row = _RUN_IDENTITY.first(session, {"run_id": run_id})
    return RunIdentity(*row) if row else None


@dataclass(frozen=True)
class RunVersion:
    """The model version a run computes, and its step: what decides its retry budget."""

    model_name: str
    model_version: str
    step: str | None


_RUN_VERSION = select(_runs.c.model_name, _runs.c.model_version, _runs.c.step).where(_runs.c.id == bindparam("run_id"))


def run_version(session: Session, run_id: int) -> RunVersion | None:
    row = session.execute(_RUN_VERSION, {"run_id": run_id}).first()
    return RunVersion(*row) if row else None


def run_statuses(session: Session, run_ids: Iterable[int]) -> dict[int, str]:
    ids = list(run_ids)
    if not ids:
        return {}
    return dict(session.execute(select(RunRow.id, RunRow.status).where(RunRow.id.in_(ids))).all())


def set_run_status_if(session: Session, run_id: int, allowed_from: Collection[str], values: dict[str, Any]) -> bool:
    """Compare-and-set: change the run only if its status is one of ``allowed_from``."""
    statement = _run_update(frozenset(values), frozenset(allowed_from))
    return bool(statement.count(session, {"run_id": run_id, **_values(values)}))


def set_run_progress(session: Session, run_id: int, fraction: float | None, message: str | None) -> bool:
    return bool(_SET_RUN_PROGRESS.count(session, {"run_id": run_id, "fraction": fraction, "message": message}))


def submitter_names(session: Session, runs: Iterable[RunRow]) -> dict[int, str]:
    """User id -> name of the users who submitted these runs."""
    ids = {run.submitted_by for run in runs if run.submitted_by is not None}
    if not ids:
        return {}
    rows = session.execute(select(UserRow.id, UserRow.name).where(UserRow.id.in_(ids)))
    return {user_id: name for user_id, name in rows}


def count_runs_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(RunRow.status, func.count()).group_by(RunRow.status)).all()
    return dict(rows)


# --- attempts -----------------------------------------------------------------------------------


def add_attempt(session: Session, values: dict[str, Any]) -> int:
    """Insert an attempt; its id."""
    columns = frozenset(values)
    statement = _attempt_inserts.get(columns)
    if statement is None:
        returning = insert(_attempts).returning(_attempts.c.id)
        statement = _attempt_inserts[columns] = PreparedStatement(returning, sorted(columns))
    returned = statement.first(session, values)
    assert returned is not None, "an INSERT ... RETURNING returns its row"
    return int(returned[0])


def attempts_of(session: Session, run_id: int) -> list[AttemptRow]:
    return list(session.scalars(select(AttemptRow).where(AttemptRow.run_id == run_id).order_by(AttemptRow.number)))


def count_attempts(session: Session, run_id: int, statuses: Collection[str] | None = None) -> int:
    if statuses is None:
        return int(session.scalar(_COUNT_ATTEMPTS, {"run_id": run_id}) or 0)
    return int(session.scalar(_COUNT_ATTEMPTS_IN, {"run_id": run_id, "statuses": list(statuses)}) or 0)


def tally_attempts(session: Session, run_id: int, statuses: Collection[str]) -> tuple[int, int]:
    """How many attempts the run has had, and how many of them are in ``statuses``: one read."""
    key = frozenset(statuses)
    statement = _attempt_tallies.get(key)
    if statement is None:
        among_them = func.sum(case((among(_attempts.c.status, key), 1)))
        statement = _attempt_tallies[key] = PreparedStatement(
            select(func.count(), func.coalesce(among_them, 0)).where(_attempts.c.run_id == bindparam("run_id"))
        )
    row = statement.first(session, {"run_id": run_id})
    assert row is not None, "an aggregate returns one row"
    return int(row[0]), int(row[1])


@dataclass(frozen=True)
class ChangedAttempt:
    run_id: int
    number: int


def set_attempt_if(session: Session, attempt_id: int, status: str, values: dict[str, Any]) -> ChangedAttempt | None:
    """Compare-and-set: change the attempt only if its status is ``status``; None otherwise."""
    parameters = {"attempt_id": attempt_id, "from_status": status, **_values(values)}
    row = _attempt_update(frozenset(values)).first(session, parameters)
    return ChangedAttempt(row[0], row[1]) if row else None


def unsucceeded_attempt_numbers(session: Session, run_ids: Collection[int]) -> dict[int, list[int]]:
    """The numbers of the attempts of ``run_ids`` that did not succeed, by run (runs with none left out)."""
    numbers: dict[int, list[int]] = {}
    if run_ids:
        statement = (
            select(AttemptRow.run_id, AttemptRow.number)
            .where(AttemptRow.run_id.in_(list(run_ids)), AttemptRow.status != AttemptStatus.SUCCEEDED.value)
            .order_by(AttemptRow.run_id, AttemptRow.number)
        )
        for run_id, number in session.execute(statement):
            numbers.setdefault(run_id, []).append(number)
    return numbers


def get_attempt(session: Session, attempt_id: int) -> AttemptRow | None:
    return session.get(AttemptRow, attempt_id)


def attempt_status(session: Session, attempt_id: int) -> tuple[int, str] | None:
    """The attempt's run id and status."""
    row = _ATTEMPT_STATUS.first(session, {"attempt_id": attempt_id})
    return (row[0], row[1]) if row else None


# Built once: every heartbeat of every worker runs it.
_RENEW_LEASE = (
    update(_attempts)
    .where(_attempts.c.id == bindparam("attempt_id"), _attempts.c.status.in_(_ACTIVE_ATTEMPTS))
    .values(lease_expires_at=bindparam("expires_at", type_=_attempts.c.lease_expires_at.type))
)


def renew_lease(session: Session, attempt_id: int, expires_at: dt.datetime) -> None:
    """Move the attempt's lease to ``expires_at``, unless the attempt has ended."""
    session.execute(_RENEW_LEASE, {"attempt_id": attempt_id, "expires_at": expires_at})


def renew_leases(session: Session, runner_id: str, attempt_ids: Collection[int], expires_at: dt.datetime) -> None:
    if attempt_ids:
        session.execute(
            update(AttemptRow)
            .where(
                AttemptRow.runner_id == runner_id,
                AttemptRow.id.in_(list(attempt_ids)),
                AttemptRow.status.in_(_ACTIVE_ATTEMPTS),
            )
            .values(lease_expires_at=expires_at)
        )


def active_attempts(session: Session, backend: str | None = None) -> list[AttemptRow]:
    """The attempts still starting or running (on ``backend``, by name, when given)."""
    statement = select(AttemptRow).where(AttemptRow.status.in_(_ACTIVE_ATTEMPTS))
    if backend is not None:
        statement = statement.where(AttemptRow.backend == backend)
    return list(session.scalars(statement))


def expired_attempts(session: Session, now: dt.datetime, backend: str | None = None) -> list[AttemptRow]:
    """The active attempts whose lease ran out before ``now`` (on ``backend`` when given)."""
    statement = select(AttemptRow).where(
        AttemptRow.status.in_(_ACTIVE_ATTEMPTS),
        AttemptRow.lease_expires_at < now,
    )
    if backend is not None:
        statement = statement.where(AttemptRow.backend == backend)
    return list(session.scalars(statement))


_LAPSED_ATTEMPTS = select(_attempts.c.id).where(
    _attempts.c.id.in_(bindparam("attempt_ids", expanding=True)),
    or_(
        _attempts.c.status.not_in(_ACTIVE_ATTEMPTS),
        _attempts.c.lease_expires_at < bindparam("now", type_=_attempts.c.lease_expires_at.type),
    ),
)


def lapsed_attempts(session: Session, attempt_ids: Collection[int], now: dt.datetime) -> list[int]:
    """Those of ``attempt_ids`` that ended, or whose lease ran out before ``now``."""
    return list(session.scalars(_LAPSED_ATTEMPTS, {"attempt_ids": list(attempt_ids), "now": now}))


# --- outputs ------------------------------------------------------------------------------------


def add_outputs(session: Session, run_id: int, outputs: Iterable[dict[str, Any]]) -> None:
    rows = [{"run_id": run_id, **output} for output in outputs]
    if rows:
        session.execute(insert(_outputs), rows)


def copy_outputs(session: Session, source_run_id: int, target_run_id: int) -> None:
    """Give a run the outputs of another (a cache hit shares the files of the run it reuses)."""
    columns = (_outputs.c.path, _outputs.c.size, _outputs.c.sha256, _outputs.c.uri)
    rows = select(literal(target_run_id), *columns).where(_outputs.c.run_id == source_run_id)
    session.execute(insert(_outputs).from_select(["run_id", *(c.name for c in columns)], rows))


def outputs_of_runs(session: Session, run_ids: list[int]) -> list[OutputRow]:
    """The outputs of several runs, by run and path."""
    if not run_ids:
        return []
    statement = select(OutputRow).where(OutputRow.run_id.in_(run_ids)).order_by(OutputRow.run_id, OutputRow.path)
    return list(session.scalars(statement))


def outputs_of(session: Session, run_id: int) -> list[OutputRow]:
    return list(session.scalars(select(OutputRow).where(OutputRow.run_id == run_id).order_by(OutputRow.path)))


# --- events -------------------------------------------------------------------------------------


_HELD_EVENTS = "modelrunner.held_events"  # the session.info key of events_together's list


def add_event(session: Session, run_id: int | None, type_: str, data: dict[str, Any], at: dt.datetime) -> None:
    event = {"run_id": run_id, "type": type_, "data": data, "created_at": at}
    held = session.info.get(_HELD_EVENTS)
    if held is not None:
        held.append(event)
    else:
        _INSERT_EVENT.many(session, [event])


@contextmanager
def events_together(session: Session) -> Iterator[None]:
    """Events added in the block are inserted together, in one statement, when it ends (in their
    order); a block that raises drops them with the changes they describe. For blocks that write
    many events and read none back (the dispatcher's records and claims)."""
    if _HELD_EVENTS in session.info:
        yield  # an enclosing block inserts them
        return
    held: list[dict[str, Any]] = []
    session.info[_HELD_EVENTS] = held
    try:
        yield
    finally:
        del session.info[_HELD_EVENTS]
    add_events(session, held)


def add_events(session: Session, events: list[dict[str, Any]]) -> None:
    """Insert many events (``run_id``, ``type``, ``data``, ``created_at`` each) in one statement."""
    _INSERT_EVENT.many(session, events)


def events_of(session: Session, run_id: int, after_id: int, limit: int) -> list[EventRow]:
    statement = (
        select(EventRow).where(EventRow.run_id == run_id, EventRow.id > after_id).order_by(EventRow.id).limit(limit)
    )
    return list(session.scalars(statement))
