"""The loop that moves what no request moves: pipelines advance as their steps end, schedules
fire, triggers fire, the checkpoints of ended runs are removed. It holds no state of its own:
each tick reads where things stand from the database, so a restarted server resumes where the
last one stopped."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from modelrunner.engine import pipelines
from modelrunner.engine.catalog import VersionCatalog
from modelrunner.errors import ModelrunnerError
from modelrunner.store import queries
from modelrunner.store.database import Database

log = logging.getLogger("modelrunner.automation")


class Rules(Protocol):
    """Schedules, triggers, the checkpoint sweep: ``tick`` does what is due and says how many
    runs it created."""

    def tick(self) -> int: ...


class Automation:
    """``wake()`` makes it act at once (a step ended, a run was queued); it also acts every
    ``tick_seconds`` (schedules, triggers, and changes made by other processes)."""

    def __init__(
        self,
        database: Database,
        catalog: VersionCatalog,
        rules: Sequence[Rules],
        *,
        tick_seconds: float,
        on_queued: Callable[[], None],
    ) -> None:
        self._database = database
        self._catalog = catalog
        self._rules = rules
        self._tick_seconds = tick_seconds
        self._on_queued = on_queued
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_rules = 0.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="automation", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def wake(self) -> None:
        self._wake.set()

    def advance_pipelines(self) -> int:
        """Advance every pipeline run still going; how many there were."""
        with self._database.read() as session:
            active = queries.active_pipelines(session)
        for pipeline_id, model, version in active:
            try:
                with self._database.write() as session:
                    spec = self._catalog.get(session, model, version).spec
                    pipelines.advance(session, pipeline_id, spec)
            except ModelrunnerError as exc:
                log.warning("pipeline run %s cannot advance: %s", pipeline_id, exc.message)
        return len(active)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(max(0.0, self._next_rules - time.monotonic()))
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self._tick()
            except Exception:  # the loop must outlive any single failure; the next tick retries
                log.exception("automation tick failed")
                time.sleep(min(self._tick_seconds, 1.0))

    def _tick(self) -> None:
        if self.advance_pipelines():
            self._on_queued()
        now = time.monotonic()
        if now >= self._next_rules:
            self._next_rules = now + self._tick_seconds
            for rules in self._rules:
                if rules.tick():
                    self._on_queued()
                    self.wake()  # a pipeline may have been started: advance it now
