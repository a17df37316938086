"""Connections to the store: read and write sessions, SQLite tuned for concurrent writers."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from modelrunner.errors import AlreadyExists, InvalidInput, ModelrunnerError, StoreError

# How each driver names a unique-constraint violation (a primary key is a unique key too).
_SQLITE_UNIQUE = frozenset({"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"})
_POSTGRES_UNIQUE = "23505"  # SQLSTATE unique_violation


def normalise_url(url: str) -> str:
    """Use psycopg 3 for a plain ``postgresql://`` URL (SQLAlchemy would pick psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Database:
    """The store's connections. ``write()`` sessions commit on success and roll back on error.

    On SQLite, writes begin with ``BEGIN IMMEDIATE`` so two writers never deadlock upgrading a
    read lock, the journal is WAL (readers never wait for the writer) and a busy timeout makes
    writers queue instead of failing with "database is locked". Writers of this process also
    queue on a lock of their own: SQLite's busy handler sleeps for milliseconds between retries,
    while a waiter on the lock resumes the moment the writer before it commits.
    """

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            self._prepare_sqlite_folder()
            self.read_engine = self._sqlite_engine(begin="BEGIN")
            self.write_engine = self._sqlite_engine(begin="BEGIN IMMEDIATE")
        else:
            # No pre-ping (a round trip per transaction): a connection found dead raises once, and
            # SQLAlchemy then drops the whole pool, so the next transaction reconnects.
            self.read_engine = self.write_engine = create_engine(self.url, pool_size=10, max_overflow=20)
        for engine in {self.read_engine, self.write_engine}:
            event.listen(engine, "handle_error", _translate_unique_violation)
        self._writer: AbstractContextManager[object] = threading.Lock() if self.is_sqlite else contextlib.nullcontext()
        self._read = sessionmaker(self.read_engine, expire_on_commit=False)
        self._write = sessionmaker(self.write_engine, expire_on_commit=False)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries; nothing it changes is committed."""
        with self._translated(), self._read() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose changes commit together when the block ends without error."""
        with self._writer, self._translated(), self._write.begin() as session:
            yield session

    def ping(self) -> None:
        """Raise StoreError unless the database answers."""
        with self.read() as session:
            session.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            self.write_engine.dispose()

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except OperationalError as exc:
            raise StoreError(f"the database is unavailable: {exc.orig}") from exc
        except DataError as exc:
            # A value the column cannot hold (PostgreSQL refuses NUL in text): the caller's input.
            raise InvalidInput(f"a value cannot be stored: {exc.orig}") from exc

    def _prepare_sqlite_folder(self) -> None:
        path = self.url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)

    def _sqlite_engine(self, begin: str) -> Engine:
        engine = create_engine(
            self.url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=10,
            max_overflow=20,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the driver, decide when transactions begin.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql(begin)

        return engine


def _translate_unique_violation(context: ExceptionContext) -> None:
    """Raise AlreadyExists in place of the driver's unique violation, wherever the statement ran:
    a flush inside a caller's savepoint (which rolls back just that savepoint, as before), a Core
    statement, or the commit at the end of a write block."""
    error = context.original_exception
    if _is_unique_violation(error):
        first_line = str(error).strip().splitlines()[0]
        raise AlreadyExists(f"it exists already ({first_line})") from error


def translate_driver_error(error: BaseException) -> ModelrunnerError | None:
    """The store's error for an error the driver raised itself (a statement run on the driver's
    cursor: see store/prepared.py), as ``Database`` translates SQLAlchemy's; None for others."""
    kinds = {kind.__name__ for kind in type(error).__mro__}
    if _is_unique_violation(error):
        first_line = str(error).strip().splitlines()[0]
        return AlreadyExists(f"it exists already ({first_line})")
    if "OperationalError" in kinds:
        return StoreError(f"the database is unavailable: {error}")
    if "DataError" in kinds:
        return InvalidInput(f"a value cannot be stored: {error}")
    return None


def _is_unique_violation(error: BaseException) -> bool:
    return (
        getattr(error, "sqlite_errorname", None) in _SQLITE_UNIQUE
        or getattr(error, "sqlstate", None) == _POSTGRES_UNIQUE
    )
