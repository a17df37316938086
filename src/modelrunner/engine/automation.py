"""The loop that moves what no request moves: pipelines advance as their steps end, schedules
fire, triggers fire, the checkpoints of ended runs are removed. It holds no state of its own:
each tick reads where things stand from the database, so a restarted server resumes where the
last one stopped."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from modelrunner.engine import pipelines
from modelrunner.engine.catalog import VersionCatalog
from modelrunner.errors import ModelrunnerError
from modelrunner.service_loop import ServiceLoop
from modelrunner.store import queries
from modelrunner.store.database import Database

log = logging.getLogger("modelrunner.automation")


class Rules(Protocol):
    """Schedules, triggers, the checkpoint sweep: ``tick`` does what is due and says how many
    runs it created."""

    def tick(self) -> int: ...


class Automation:
    """``wake()`` makes it act at once (a run was queued, a schedule fired); ``runs_ended()`` does
    too while pipeline runs may be going. It also acts every ``tick_seconds`` (schedules,
    triggers, and changes made by other processes)."""

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
        self._loop = ServiceLoop("automation", self._round, interval=tick_seconds, log=log)
        self._next_rules = 0.0
        # Whether the last look found pipeline runs going (or one may have started since): while
        # none go, runs ending wake nothing, so a server without pipelines pays no query per run.
        self._pipelines_may_go = True

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def wake(self) -> None:
        self._pipelines_may_go = True
        self._loop.wake()

    def runs_ended(self) -> None:
        """Runs ended: their pipelines advance now. Pipelines started by another server since the
        last round are seen at the next interval."""
        if self._pipelines_may_go:
            self._loop.wake()

    def advance_pipelines(self) -> int:
        """Advance every pipeline run still going; how many there were."""
        with self._database.read() as session:
            active = queries.active_pipelines(session)
        self._pipelines_may_go = bool(active)
        for pipeline_id, model, version in active:
            try:
                with self._database.write() as session:
                    spec = self._catalog.get(session, model, version).spec
                    pipelines.advance(session, pipeline_id, spec)
            except ModelrunnerError as exc:
                log.warning("pipeline run %s cannot advance: %s", pipeline_id, exc.message)
        return len(active)

    def _round(self) -> float:
        if self.advance_pipelines():
            self._on_queued()
        now = time.monotonic()
        if now >= self._next_rules:
            self._next_rules = now + self._tick_seconds
            for rules in self._rules:
                if rules.tick():
                    self._on_queued()
                    self.wake()  # a pipeline may have been started: advance it now
        return self._next_rules - time.monotonic()
