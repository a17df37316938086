"""Migrations produce exactly the schema of the table definitions, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select

from modelrunner.errors import AlreadyExists
from modelrunner.store import migrate, queries
from modelrunner.store.database import Database
from modelrunner.store.tables import Base, RunRow
from tests.integration.runs_api import new_run_row


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    yield db
    db.dispose()


def schema_difference(database: Database) -> list[object]:
    with database.write_engine.connect() as connection:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


def head(database: Database) -> str | None:
    return ScriptDirectory.from_config(migrate.alembic_config(database)).get_current_head()


def test_a_fresh_database_is_empty_before_the_upgrade(database: Database) -> None:
    assert migrate.current_revision(database) is None
    assert schema_difference(database)  # every table is missing: the comparison can see differences


def test_upgrade_gives_the_schema_of_the_table_definitions(database: Database) -> None:
    migrate.upgrade(database)

    assert schema_difference(database) == []
    tables = set(inspect(database.write_engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_upgrade_reaches_the_newest_revision(database: Database) -> None:
    migrate.upgrade(database)

    assert migrate.current_revision(database) == head(database)


def test_upgrade_twice_is_a_no_op_that_keeps_the_data(database: Database) -> None:
    migrate.upgrade(database)
    with database.write() as session:
        run = queries.add_run(
            session,
            new_run_row(params={"n": 1}, cache_key="k" * 64, status="succeeded"),
        )
        run_id = run.id
    revision = migrate.current_revision(database)

    migrate.upgrade(database)

    assert migrate.current_revision(database) == revision
    assert schema_difference(database) == []
    with database.read() as session:
        assert session.scalars(select(RunRow.params).where(RunRow.id == run_id)).one() == {"n": 1}


def test_at_most_one_unfinished_run_per_cache_key_after_migration(database: Database) -> None:
    migrate.upgrade(database)

    def run(key: str, status: str = "queued") -> RunRow:
        return new_run_row(cache_key=key, status=status)

    with database.write() as session:
        # Finished runs of one key may pile up (refreshes, retries after failures)...
        for status in ("succeeded", "succeeded", "failed", "cancelled"):
            queries.add_run(session, run("same", status))
        queries.add_run(session, run("same"))

    # ...but only one of them may be unfinished.
    with pytest.raises(AlreadyExists), database.write() as session:
        queries.add_run(session, run("same", "running"))
