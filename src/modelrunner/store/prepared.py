"""Statements of the paths every run takes, compiled once per dialect and run on the driver's own
cursor, inside the session's transaction.

SQLAlchemy's execution layer (the session, the execution context, result objects) costs several
times what SQLite spends executing one of these statements; a run passes through about twenty
of them. The statements stay Core statements, written once for both stores: only their
execution is done here, with the bind and result conversions SQLAlchemy would apply, so what is
stored and read is the same as through SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Dialect, literal
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from modelrunner.store.database import translate_driver_error

Convert = Callable[[Any], Any]


@dataclass(frozen=True)
class _Compiled:
    sql: str
    order: tuple[str, ...] | None  # bind names in order, for a positional paramstyle; None: named
    binds: Mapping[str, Convert | None]
    defaults: Mapping[str, Any]  # values written into the statement (``status == 'queued'``)
    results: tuple[Convert | None, ...]  # by selected or returned column
    # An INSERT's columns left out that have a default computed in Python (``default=dict``).
    column_defaults: tuple[tuple[str, Any], ...] = ()

    def parameters(self, given: Mapping[str, Any]) -> Sequence[Any] | Mapping[str, Any]:
        values = {**self.defaults, **given}
        for name, default in self.column_defaults:
            if name not in given:
                values[name] = default.arg(None) if default.is_callable else default.arg
        for name, convert in self.binds.items():
            if convert is not None:
                values[name] = convert(values[name])
        if self.order is None:
            return values
        return tuple(values[name] for name in self.order)

    def row(self, raw: Sequence[Any]) -> tuple[Any, ...]:
        pairs = zip(self.results, raw, strict=True)
        return tuple(value if convert is None else convert(value) for convert, value in pairs)


class PreparedStatement:
    """A Core statement without expanding parameters (an IN list of fixed values is written with
    ``among``). ``columns`` names the columns an INSERT is given (the others take their
    defaults); the statement is compiled for exactly those."""

    def __init__(self, statement: ClauseElement, columns: Sequence[str] | None = None) -> None:
        self._statement = statement
        self._columns = list(columns) if columns is not None else None
        self._compiled: dict[str, _Compiled] = {}

    def rows(self, session: Session, parameters: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Execute once; the rows it selects or returns, converted as SQLAlchemy would."""
        compiled, cursor = self._execute(session, parameters)
        try:
            return [compiled.row(raw) for raw in cursor.fetchall()] if cursor.description else []
        finally:
            cursor.close()

    def first(self, session: Session, parameters: Mapping[str, Any]) -> tuple[Any, ...] | None:
        found = self.rows(session, parameters)
        return found[0] if found else None

    def count(self, session: Session, parameters: Mapping[str, Any]) -> int:
        """Execute once; how many rows it changed."""
        _, cursor = self._execute(session, parameters)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def many(self, session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
        """Execute once for each of ``rows`` (an INSERT of many rows), in one driver call."""
        if rows:
            connection, compiled, cursor = self._cursor(session)
            parameters = [compiled.parameters(row) for row in rows]
            _announce(connection, cursor, compiled.sql, parameters, many=True)
            with _translated(cursor):
                cursor.executemany(compiled.sql, parameters)
            cursor.close()

    def _execute(self, session: Session, given: Mapping[str, Any]) -> tuple[_Compiled, Any]:
        connection, compiled, cursor = self._cursor(session)
        parameters = compiled.parameters(given)
        _announce(connection, cursor, compiled.sql, parameters, many=False)
        with _translated(cursor):
            cursor.execute(compiled.sql, parameters)
        return compiled, cursor

    def _cursor(self, session: Session) -> tuple[Connection, _Compiled, Any]:
        connection = session.connection()  # begins the session's transaction if it has not yet
        return connection, self._for(connection.dialect), connection.connection.cursor()

    def _for(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            compiled = self._compiled[dialect.name] = self._compile(dialect)
        return compiled

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self._statement.compile(dialect=dialect, column_keys=self._columns)
        assert isinstance(compiled, SQLCompiler)
        binds = {name: bind for bind, name in compiled.bind_names.items()}  # as named in the SQL
        defaults = {name: bind.effective_value for name, bind in binds.items() if not bind.required}
        converts = {name: bind.type.dialect_impl(dialect).bind_processor(dialect) for name, bind in binds.items()}
        statement = self._statement
        columns = getattr(statement, "selected_columns", None) or getattr(statement, "exported_columns", None) or ()
        results = tuple(column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns)
        order = tuple(compiled.positiontup) if compiled.positional and compiled.positiontup is not None else None
        column_defaults = tuple((column.key, column.default) for column in compiled.insert_prefetch)
        return _Compiled(compiled.string, order, converts, defaults, results, column_defaults)


def _announce(connection: Connection, cursor: Any, sql: str, parameters: Any, *, many: bool) -> None:
    """Tell the engine's ``before_cursor_execute`` listeners (SQL logging, tracing), as
    SQLAlchemy would; nothing to do, and nearly no cost, without any."""
    listeners = connection.dispatch.before_cursor_execute
    if listeners:
        for listener in listeners:
            listener(connection, cursor, sql, parameters, None, many)


def among(column: ColumnElement[Any], values: Iterable[str]) -> ColumnElement[bool]:
    """``column IN (values)`` with one parameter per value, as a prepared statement needs (an IN
    of a list expands its parameters at each execution)."""
    return column.in_([literal(value) for value in sorted(values)])


@contextmanager
def _translated(cursor: Any) -> Iterator[None]:
    """The driver's errors as the store's (see database.translate_driver_error); the cursor is
    closed on an error."""
    try:
        yield
    except Exception as exc:
        cursor.close()
        translated = translate_driver_error(exc)
        if translated is None:
            raise
        raise translated from exc
