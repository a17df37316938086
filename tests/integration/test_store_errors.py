"""Driver errors come out of the store as domain errors, on SQLite and PostgreSQL alike: a unique
violation as AlreadyExists wherever it surfaces, a lost compare-and-set as ChangedMeanwhile."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import func, insert, select

from modelrunner.clock import utcnow
from modelrunner.errors import AlreadyExists, ChangedMeanwhile
from modelrunner.store import account_queries, automation_queries, migrate
from modelrunner.store.database import Database
from modelrunner.store.tables import GroupMemberRow, GroupRow, ScheduleStateRow, TriggerCursorRow, UserRow


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    migrate.upgrade(db)
    yield db
    db.dispose()


def user(name: str) -> UserRow:
    return UserRow(name=name, email=None, password_hash=None, is_admin=False, disabled=False, created_at=utcnow())


def user_count(database: Database) -> int:
    with database.read() as session:
        return int(session.scalar(select(func.count()).select_from(UserRow)) or 0)


def test_a_unique_violation_at_flush_in_a_savepoint_loses_only_the_savepoint(database: Database) -> None:
    with database.write() as session:
        account_queries.add(session, user("ada"))
    with database.write() as session:
        with pytest.raises(AlreadyExists, match="exists already") as raised, session.begin_nested():
            account_queries.add(session, user("ada"))
        account_queries.add(session, user("grace"))  # the transaction goes on after the lost insert
    assert raised.value.__cause__ is not None  # the driver's error, kept for the log
    assert user_count(database) == 2


def test_a_unique_violation_at_the_end_of_a_write_block_rolls_it_back(database: Database) -> None:
    with database.write() as session:
        account_queries.add(session, user("ada"))
    with pytest.raises(AlreadyExists), database.write() as session:
        session.add(user("grace"))
        session.add(user("ada"))  # not flushed: the commit at the end of the block finds it
    assert user_count(database) == 1


def test_a_unique_violation_of_a_core_statement_and_of_a_primary_key(database: Database) -> None:
    with database.write() as session:
        account_queries.add(session, user("ada"))
        account_queries.add(session, GroupRow(name="team", created_at=utcnow()))
    with pytest.raises(AlreadyExists), database.write() as session:
        session.execute(insert(GroupRow).values(name="team", created_at=utcnow()))
    with database.write() as session:
        ada = account_queries.user_by_name(session, "ada")
        team = account_queries.group_by_name(session, "team")
        assert ada is not None and team is not None
        account_queries.add(session, GroupMemberRow(group_id=team.id, user_id=ada.id))
        session.expunge_all()  # a second object of the same identity would be refused by the ORM itself
        with pytest.raises(AlreadyExists), session.begin_nested():
            session.execute(insert(GroupMemberRow).values(group_id=team.id, user_id=ada.id))


def test_other_integrity_errors_are_not_taken_for_a_taken_key(database: Database) -> None:
    with pytest.raises(Exception) as raised, database.write() as session:
        account_queries.add(session, GroupMemberRow(group_id=999, user_id=999))  # no such group or user
    assert not isinstance(raised.value, AlreadyExists)


def test_a_lost_cursor_move_is_changed_meanwhile_and_rolls_back(database: Database) -> None:
    with database.write() as session:
        automation_queries.add_trigger_cursor(
            session, TriggerCursorRow(name="m/t", last_event_id=5, updated_at=utcnow())
        )
    with pytest.raises(AlreadyExists), database.write() as session:
        automation_queries.add_trigger_cursor(
            session, TriggerCursorRow(name="m/t", last_event_id=0, updated_at=utcnow())
        )
    with pytest.raises(ChangedMeanwhile), database.write() as session:
        automation_queries.move_cursor(session, "m/t", from_id=5, to_id=7, at=utcnow())
        automation_queries.move_cursor(session, "m/t", from_id=5, to_id=9, at=utcnow())  # read before the move above
    with database.read() as session:
        assert automation_queries.trigger_cursors(session)["m/t"].last_event_id == 5


def test_a_lost_schedule_move_is_changed_meanwhile(database: Database) -> None:
    tick = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    with database.write() as session:
        row = ScheduleStateRow(name="m/s", cron="0 * * * * UTC", next_fire_at=tick, last_fired_at=None, updated_at=tick)
        automation_queries.add_schedule_state(session, row)
    later = {"next_fire_at": tick + dt.timedelta(hours=1), "last_fired_at": tick, "updated_at": tick}
    with database.write() as session:
        automation_queries.move_schedule(session, "m/s", next_fire_at=tick, signature="0 * * * * UTC", values=later)
    with pytest.raises(ChangedMeanwhile), database.write() as session:
        automation_queries.move_schedule(session, "m/s", next_fire_at=tick, signature="0 * * * * UTC", values=later)
