"""The process log's lines as a reader or a log system takes them: which attempt a line is about,
carried into the threads that work on it, and no message passing for a record of its own."""

from __future__ import annotations

import contextvars
import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from modelrunner.process_log import LogFormat, LogLevel, about_attempt, configure

pytestmark = pytest.mark.store_free

log = logging.getLogger("modelrunner.test")


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """configure() replaces the root logger's handlers; pytest's own come back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


@pytest.mark.usefixtures("restored_logging")
def test_json_lines_carry_the_attempt_into_threads_and_forget_it_after() -> None:
    out = io.StringIO()
    configure(LogLevel.INFO, LogFormat.JSON, out)

    with about_attempt(backend="local"):
        with about_attempt(run_id=5, attempt_id=7, model="seir"):
            worker = threading.Thread(target=contextvars.copy_context().run, args=(log.info, "in a thread"))
            worker.start()
            worker.join()
            log.warning("overridden", extra={"model": "other"})
        log.info("the backend only")
    log.info("about nothing")
    log.debug("below the level")

    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["in a thread", "overridden", "the backend only", "about nothing"]
    assert {k: lines[0][k] for k in ("run_id", "attempt_id", "model", "backend")} == {
        "run_id": 5,
        "attempt_id": 7,
        "model": "seir",
        "backend": "local",
    }
    assert lines[1]["model"] == "other" and lines[1]["level"] == "WARNING"
    assert lines[2]["backend"] == "local" and "run_id" not in lines[2]
    assert not {"run_id", "backend"} & lines[3].keys()


@pytest.mark.usefixtures("restored_logging")
def test_a_text_record_is_one_line_and_its_own_line_breaks_are_indented() -> None:
    out = io.StringIO()
    configure(LogLevel.INFO, LogFormat.TEXT, out)

    with about_attempt(run_id=5, attempt_id=7, model="seir", backend="local"):
        try:
            raise ValueError("no such file")
        except ValueError:
            log.exception("could not launch\n2026-01-01 00:00:00,000 INFO forged: a record of its own")

    first, *rest = out.getvalue().splitlines()
    assert first.endswith(" ERROR modelrunner.test: could not launch [run 5, attempt 7, model seir, backend local]")
    assert rest[0] == "  2026-01-01 00:00:00,000 INFO forged: a record of its own"
    assert rest[-1] == "  ValueError: no such file"
    assert all(line.startswith("  ") for line in rest)
