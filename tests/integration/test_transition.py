"""The one transition function, against the real store: compare-and-set, idempotence, events."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from modelrunner.engine.states import RunStatus
from modelrunner.engine.transition import transition
from modelrunner.errors import InvalidTransition, NotFound
from modelrunner.store import migrate, queries
from modelrunner.store.database import Database
from modelrunner.store.tables import EventRow, RunRow
from tests.integration.runs_api import new_run_row


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    migrate.upgrade(db)
    yield db
    db.dispose()


def new_run(database: Database, status: RunStatus = RunStatus.QUEUED) -> int:
    with database.write() as session:
        run = queries.add_run(
            session,
            new_run_row(status=status.value),
        )
        return int(run.id)


def status_events(database: Database, run_id: int) -> list[dict[str, object]]:
    with database.read() as session:
        rows = session.scalars(
            select(EventRow).where(EventRow.run_id == run_id, EventRow.type == "run.status").order_by(EventRow.id)
        )
        return [row.data for row in rows]


def run_row(database: Database, run_id: int) -> RunRow:
    with database.read() as session:
        run = queries.get_run(session, run_id)
    assert run is not None
    return run


def move(database: Database, run_id: int, to: RunStatus, **kwargs: Any) -> bool:
    with database.write() as session:
        return bool(transition(session, run_id, to, **kwargs))


def test_each_transition_moves_the_run_and_writes_one_event(database: Database) -> None:
    run_id = new_run(database)

    for to in (RunStatus.STARTING, RunStatus.RUNNING, RunStatus.SUCCEEDED):
        assert move(database, run_id, to) is True
        assert run_row(database, run_id).status == to.value

    assert status_events(database, run_id) == [
        {"from": "queued", "to": "starting"},
        {"from": "starting", "to": "running"},
        {"from": "running", "to": "succeeded"},
    ]


def test_timestamps_follow_the_transitions(database: Database) -> None:
    run_id = new_run(database)
    move(database, run_id, RunStatus.STARTING)
    assert run_row(database, run_id).started_at is None

    move(database, run_id, RunStatus.RUNNING)
    running = run_row(database, run_id)
    assert running.started_at is not None
    assert running.finished_at is None

    move(database, run_id, RunStatus.FAILED, reason="exit status 3")
    failed = run_row(database, run_id)
    assert failed.finished_at is not None
    assert failed.started_at is not None and failed.started_at <= failed.finished_at
    assert failed.started_at.utcoffset() is not None  # timezone-aware, also on SQLite
    assert failed.error == "exit status 3"
    assert status_events(database, run_id)[-1] == {"from": "running", "to": "failed", "reason": "exit status 3"}


def test_calling_twice_is_safe(database: Database) -> None:
    run_id = new_run(database)
    assert move(database, run_id, RunStatus.CANCELLED) is True

    assert move(database, run_id, RunStatus.CANCELLED) is False

    assert status_events(database, run_id) == [{"from": "queued", "to": "cancelled"}]


def test_invalid_transition_raises_and_changes_nothing(database: Database) -> None:
    run_id = new_run(database)
    before = run_row(database, run_id)

    with pytest.raises(InvalidTransition, match="is queued; it cannot become succeeded"):
        move(database, run_id, RunStatus.SUCCEEDED, progress_fraction=1.0)

    after = run_row(database, run_id)
    assert (after.status, after.finished_at, after.progress_fraction) == ("queued", None, None)
    assert after.finished_at == before.finished_at
    assert status_events(database, run_id) == []


@pytest.mark.parametrize("final", [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.CANCELLED])
def test_a_finished_run_never_moves_again(database: Database, final: RunStatus) -> None:
    run_id = new_run(database)
    move(database, run_id, RunStatus.STARTING)
    move(database, run_id, RunStatus.RUNNING)
    move(database, run_id, final)
    events_before = status_events(database, run_id)

    for to in RunStatus:
        if to == final:
            continue
        with pytest.raises(InvalidTransition):
            move(database, run_id, to)

    assert run_row(database, run_id).status == final.value
    assert status_events(database, run_id) == events_before


def test_only_from_narrows_the_allowed_sources(database: Database) -> None:
    run_id = new_run(database)
    move(database, run_id, RunStatus.STARTING)
    move(database, run_id, RunStatus.RUNNING)

    # running -> cancelled is allowed in general, but not for a caller that only moves queued runs.
    with pytest.raises(InvalidTransition):
        move(database, run_id, RunStatus.CANCELLED, only_from=frozenset({RunStatus.QUEUED}))

    assert run_row(database, run_id).status == "running"


def test_unknown_run(database: Database) -> None:
    with pytest.raises(NotFound):
        move(database, 12345, RunStatus.CANCELLED)


def test_retry_clears_the_progress_of_the_failed_attempt(database: Database) -> None:
    run_id = new_run(database)
    move(database, run_id, RunStatus.STARTING)
    move(database, run_id, RunStatus.RUNNING)
    with database.write() as session:
        queries.set_run_progress(session, run_id, 0.7, "fitting")

    move(database, run_id, RunStatus.QUEUED, reason="attempt 1 failed; retry 1 of 1")

    run = run_row(database, run_id)
    assert (run.status, run.progress_fraction, run.progress_message, run.error) == ("queued", None, None, None)
    assert status_events(database, run_id)[-1]["reason"] == "attempt 1 failed; retry 1 of 1"


def test_the_event_is_part_of_the_callers_transaction(database: Database) -> None:
    run_id = new_run(database)

    with pytest.raises(RuntimeError), database.write() as session:
        assert transition(session, run_id, RunStatus.STARTING)
        raise RuntimeError("the caller's work failed after the transition")

    assert run_row(database, run_id).status == "queued"
    assert status_events(database, run_id) == []


def test_concurrent_transitions_from_the_same_state_one_wins(database: Database) -> None:
    run_id = new_run(database)
    move(database, run_id, RunStatus.STARTING)
    move(database, run_id, RunStatus.RUNNING)
    barrier = threading.Barrier(2)
    results: dict[RunStatus, object] = {}

    def attempt(to: RunStatus) -> None:
        barrier.wait()
        try:
            results[to] = move(database, run_id, to)
        except InvalidTransition as exc:
            results[to] = exc

    threads = [threading.Thread(target=attempt, args=(to,)) for to in (RunStatus.SUCCEEDED, RunStatus.CANCELLED)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    winners = [to for to, result in results.items() if result is True]
    losers = [to for to, result in results.items() if isinstance(result, InvalidTransition)]
    assert len(winners) == 1, results
    assert len(losers) == 1, results
    assert run_row(database, run_id).status == winners[0].value
    finals = [e for e in status_events(database, run_id) if e["from"] == "running"]
    assert finals == [{"from": "running", "to": winners[0].value}]
