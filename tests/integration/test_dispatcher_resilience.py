"""The dispatcher loses no attempt report when the store fails for a moment, and one report that
cannot be recorded does not keep the others out."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

import pytest

from modelrunner.backends.base import Finished, Started
from modelrunner.clock import utcnow
from modelrunner.engine import attempts
from modelrunner.engine.dispatcher import Dispatcher
from modelrunner.engine.states import AttemptStatus, RunStatus
from modelrunner.engine.transition import transition
from modelrunner.errors import StoreError
from modelrunner.execution.job import Outcome
from modelrunner.platform import Platform
from modelrunner.store import queries


def test_a_failed_transaction_keeps_the_reports_for_the_next_tick(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Dispatcher._record_reports
    failures: list[int] = []

    def unavailable_for_one_tick(self: Dispatcher, session: Any, reports: list[Any], *, one_by_one: bool) -> list[int]:
        # Both the tick's transaction and its report-by-report retry fail: the reports wait.
        if len(failures) < 2 and any(isinstance(r, Finished) for r in reports):
            failures.append(1)
            raise StoreError("the database is unavailable: simulated")
        return real(self, session, reports, one_by_one=one_by_one)

    monkeypatch.setattr(Dispatcher, "_record_reports", unavailable_for_one_tick)
    platform.start()
    try:
        run_id = platform.submit("noop", {"n": 5}).run.id
        deadline = time.monotonic() + 20
        status = "queued"
        while status != "succeeded" and time.monotonic() < deadline:
            time.sleep(0.05)
            with platform.database.read() as session:
                status = queries.run_statuses(session, [run_id])[run_id]
    finally:
        platform.stop()
    assert len(failures) == 2, "the simulated failure never happened"
    assert status == "succeeded"


def test_a_report_that_cannot_be_recorded_leaves_the_others_recorded(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    platform.prepare_store()
    recorded = platform.submit("noop", {"n": 1}).run.id
    refused = platform.submit("noop", {"n": 2}).run.id
    lease = utcnow() + dt.timedelta(minutes=5)
    with platform.database.write() as session:
        first = attempts.claim(session, recorded, "local", "test:1:1", lease)
        second = attempts.claim(session, refused, "local", "test:1:1", lease)
        assert first is not None and second is not None
        # Queued again behind its attempt's back: its attempt's start cannot move it to running.
        transition(session, refused, RunStatus.QUEUED, reason="test")
    dispatcher = platform.dispatcher["local"]
    dispatcher._pending = [
        Started(first.attempt_id, {"pid": 1}, utcnow()),
        Started(second.attempt_id, {"pid": 2}, utcnow()),
        Finished(first.attempt_id, Outcome(AttemptStatus.SUCCEEDED, exit_code=0)),
    ]
    with caplog.at_level(logging.WARNING, logger="modelrunner.dispatcher"):
        dispatcher._record_and_claim(claim=False)
    with platform.database.read() as session:
        statuses = queries.run_statuses(session, [recorded, refused])
    assert statuses == {recorded: "succeeded", refused: "queued"}
    assert f"attempt {second.attempt_id}: report not recorded" in caplog.text
    assert dispatcher._pending == []
