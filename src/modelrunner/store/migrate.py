"""Alembic migrations, applied programmatically (on start and by ``modelrunner db upgrade``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config

from modelrunner.store.database import Database

if TYPE_CHECKING:
    from modelrunner.auth.secret_keys import SecretKeys

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database: Database, secret_keys: SecretKeys | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = database.write_engine
    config.attributes["secret_keys"] = secret_keys  # for migrations that encrypt stored secrets
    return config


def upgrade(database: Database, revision: str = "head", *, secret_keys: SecretKeys | None = None) -> None:
    """Bring the schema to ``revision``; safe to call on an up-to-date database. A store holding
    webhook secrets in clear (before revision 0006) needs ``secret_keys`` to encrypt them."""
    command.upgrade(alembic_config(database, secret_keys), revision)


def current_revision(database: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with database.write_engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
