"""The log of a long-running process (``serve``, ``worker``): one handler on stderr, in text lines
people read or in JSON lines a log system reads, uvicorn's access log included.

Lines about a run say which one: code that works on an attempt does so inside ``about_attempt``,
and every line logged meanwhile, by any logger and in any thread that carries the context on
(``contextvars.copy_context().run``), gets the run id, attempt id, model and backend as fields (JSON)
or as a suffix (text). No message formats them by hand."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from enum import StrEnum
from types import MappingProxyType
from typing import TextIO

# The fields that say which run a line is about, in the order a text line shows them.
ATTEMPT_FIELDS = ("run_id", "attempt_id", "model", "backend")
_TEXT_NAMES = {"run_id": "run", "attempt_id": "attempt", "model": "model", "backend": "backend"}

# Never changed in place: about_attempt sets a new mapping, so the empty default is shared safely.
_about: ContextVar[Mapping[str, object]] = ContextVar("modelrunner_log_about", default=MappingProxyType({}))

# Libraries whose routine chatter (every HTTP request a client makes) would bury the platform's lines.
_QUIET_LOGGERS = ("httpx", "httpcore", "botocore", "urllib3", "kubernetes", "azure", "distributed", "asyncio")


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


@contextmanager
def about_attempt(
    *, run_id: int | None = None, attempt_id: int | None = None, model: str | None = None, backend: str | None = None
) -> Iterator[None]:
    """Within the block, every line logged in this context names these (with those of an
    enclosing block that are not given here)."""
    given = {"run_id": run_id, "attempt_id": attempt_id, "model": model, "backend": backend}
    token = _about.set({**_about.get(), **{name: value for name, value in given.items() if value is not None}})
    try:
        yield
    finally:
        _about.reset(token)


def configure(level: LogLevel, log_format: LogFormat, stream: TextIO | None = None) -> None:
    """Send every logger's lines at ``level`` and above to ``stream`` (stderr) in ``log_format``,
    Python warnings and uvicorn's access log among them. Replaces any earlier configuration."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_AttemptFields())
    handler.setFormatter(_json_formatter() if log_format == LogFormat.JSON else _TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
        uvicorn_logger.setLevel(logging.NOTSET)
    access = logging.getLogger("uvicorn.access")
    access.filters.clear()
    access.addFilter(_AccessLine())
    logging.captureWarnings(True)


class _AttemptFields(logging.Filter):
    """Puts the fields of the enclosing ``about_attempt`` on each record (a field given with
    ``extra=`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _about.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


class _AccessLine(logging.Filter):
    """uvicorn's access line without the query string (a token someone put in a URL would
    otherwise sit in the log), and its parts as fields for the JSON format."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, target, http_version, status = record.args
            path = str(target).split("?", 1)[0]
            record.args = (client, method, path, http_version, status)
            record.client_addr = client
            record.method = method
            record.path = path
            record.status_code = status
        return True


class _TextFormatter(logging.Formatter):
    """``2026-12-07 21:50:01,123 INFO modelrunner.dispatcher: message [run 2, attempt 3, ...]``, one
    record a line; its further lines indented."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        first, *rest = super().format(record).split("\n")
        about = [f"{_TEXT_NAMES[name]} {getattr(record, name)}" for name in ATTEMPT_FIELDS if hasattr(record, name)]
        if about:
            first += f" [{', '.join(about)}]"
        # Only a record's first line starts with a time: the rest (a traceback, a message's own
        # line breaks) is indented, so no message can pass for a line of its own.
        return "\n".join([first, *(f"  {line}" for line in rest)])


def _json_formatter() -> logging.Formatter:
    # Imported here: only a process that logs JSON needs it.
    from pythonjsonlogger.core import RESERVED_ATTRS
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",  # ISO 8601 in UTC, to the microsecond
        # Every field a caller adds (the attempt's, the access line's) is kept; uvicorn's copy of
        # its message with terminal colours is not.
        reserved_attrs=[*RESERVED_ATTRS, "taskName", "color_message"],
    )
