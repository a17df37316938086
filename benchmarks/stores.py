"""Fresh, empty databases for the figures: a SQLite file in a temporary folder, or a new
``bench_<random>`` database on the PostgreSQL server of ``--database-url``, dropped afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from modelrunner.store.database import normalise_url


class Stores:
    """Hands out one new database per figure, so no figure sees another's runs."""

    def __init__(self, admin_url: str | None, scratch: Path) -> None:
        self.admin_url = normalise_url(admin_url) if admin_url else None
        self.scratch = scratch
        if self.admin_url and make_url(self.admin_url).get_backend_name() != "postgresql":
            raise SystemExit(f"--database-url must be a postgresql:// URL, not {admin_url}")

    @property
    def kind(self) -> str:
        return "postgresql" if self.admin_url else "sqlite"

    @contextmanager
    def fresh(self, label: str) -> Iterator[str]:
        """The URL of a new empty database, gone when the block ends (SQLite: with the folder)."""
        if self.admin_url is None:
            yield f"sqlite:///{self.scratch / label / 'state' / 'modelrunner.db'}"
            return
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        name = f"bench_{uuid.uuid4().hex[:12]}"
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
