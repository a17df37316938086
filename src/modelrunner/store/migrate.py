"""Alembic migrations, applied programmatically (on start and by ``modelrunner db upgrade``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from modelrunner.store.database import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database: Database) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = database.write_engine
    return config


def upgrade(database: Database, revision: str = "head") -> None:
    """Bring the schema to ``revision``; safe to call on an up-to-date database."""
    command.upgrade(alembic_config(database), revision)


def current_revision(database: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with database.write_engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
