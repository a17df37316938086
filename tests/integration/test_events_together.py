"""Events held for one statement: inserted in order when the block ends, dropped with the block's
changes when it fails, and inserted by the outermost block only."""

from __future__ import annotations

import pytest
from sqlalchemy import event, func, select

from modelrunner.clock import utcnow
from modelrunner.platform import Platform
from modelrunner.store import queries
from modelrunner.store.tables import EventRow


def _events(platform: Platform) -> list[str]:
    with platform.database.read() as session:
        return list(session.scalars(select(EventRow.type).where(EventRow.type.like("test.%")).order_by(EventRow.id)))


def test_held_events_go_in_one_statement_in_their_order(platform: Platform) -> None:
    platform.prepare_store()
    inserts: list[str] = []
    event.listen(
        platform.database.write_engine,
        "before_cursor_execute",
        lambda _c, _cur, sql, *_: inserts.append(sql) if sql.startswith("INSERT INTO events") else None,
    )
    with platform.database.write() as session, queries.events_together(session):
        with queries.events_together(session):  # an inner block leaves them to the outer one
            queries.add_event(session, None, "test.first", {}, utcnow())
        queries.add_event(session, None, "test.second", {}, utcnow())
    assert _events(platform) == ["test.first", "test.second"]
    assert len(inserts) == 1


def test_a_failing_block_drops_its_events_and_keeps_the_rest(platform: Platform) -> None:
    platform.prepare_store()
    with platform.database.write() as session:
        queries.add_event(session, None, "test.kept", {}, utcnow())
        with pytest.raises(RuntimeError), session.begin_nested(), queries.events_together(session):
            queries.add_event(session, None, "test.dropped", {}, utcnow())
            raise RuntimeError("the records failed")
        queries.add_event(session, None, "test.after", {}, utcnow())  # not held any more
    assert _events(platform) == ["test.kept", "test.after"]
    with platform.database.read() as session:
        assert session.scalar(select(func.count()).select_from(EventRow).where(EventRow.type == "test.dropped")) == 0
