"""The dispatcher loses no attempt report when the store fails for a moment."""

from __future__ import annotations

import time
from typing import Any

import pytest

from modelrunner.backends.base import Finished
from modelrunner.engine.dispatcher import Dispatcher
from modelrunner.errors import StoreError
from modelrunner.platform import Platform
from modelrunner.store import queries


def test_a_failed_transaction_keeps_the_reports_for_the_next_tick(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Dispatcher._record_reports
    failures: list[int] = []

    def once_unavailable(self: Dispatcher, session: Any, reports: list[Any]) -> list[int]:
        if not failures and any(isinstance(r, Finished) for r in reports):
            failures.append(1)
            raise StoreError("the database is unavailable: simulated")
        return real(self, session, reports)

    monkeypatch.setattr(Dispatcher, "_record_reports", once_unavailable)
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
    assert failures, "the simulated failure never happened"
    assert status == "succeeded"
