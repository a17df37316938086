"""The checkpoint sweep: the checkpoints of runs that have ended are removed, on every backend.

What callers can rely on:

- the sweep reads ``run.status`` events after its cursor (a row of ``trigger_cursors`` named
  ``checkpoints:sweep``, moved by compare-and-set as the outbox moves its own) and, for each run
  that reached a final state and had an attempt that did not succeed, removes the run's local
  checkpoint folder and what each such attempt stored in the artifact store. It removes first
  and moves the cursor after, so a crash in between removes again (harmless), never not at all;
- it sweeps every ``_EVERY_SECONDS`` (nothing about it is urgent, and the automation loop ticks
  far more often), one batch of events at a time;
- the cursor starts at the first event, so the checkpoints that runs ended before the sweep
  existed are removed too: a full batch has the next one swept at the next tick, so a long
  history is caught up with without holding up the automation loop for long;
- on PostgreSQL events are read once they are 2 seconds old (see ``engine/triggers.py``);
- a run whose attempts all succeeded is not looked at: an attempt that ends its run removes its
  checkpoint itself (``execution/checkpoints.RUN_IS_OVER``).
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from contextlib import suppress
from itertools import takewhile
from pathlib import Path

from modelrunner.artifacts.store import ArtifactStore
from modelrunner.clock import utcnow
from modelrunner.engine.states import FINAL_RUN_STATES
from modelrunner.errors import AlreadyExists, ChangedMeanwhile
from modelrunner.execution import checkpoints
from modelrunner.store import automation_queries, queries
from modelrunner.store.database import Database
from modelrunner.store.tables import TriggerCursorRow

log = logging.getLogger("modelrunner.checkpoints")

CURSOR = "checkpoints:sweep"  # a colon: no trigger (named <model>/<trigger>) can take this name
_RUN_STATUS = "run.status"
_BATCH = 500
_EVERY_SECONDS = 5.0
_SETTLE_SECONDS = 2.0  # as triggers wait on PostgreSQL; SQLite commits in id order
_ENDED = {status.value for status in FINAL_RUN_STATES}


class CheckpointSweep:
    """Run by the automation loop: ``tick()`` sweeps one batch of events (it creates no runs)."""

    def __init__(self, database: Database, artifacts: ArtifactStore, state_dir: Path) -> None:
        self._database = database
        self._artifacts = artifacts
        self._state_dir = state_dir
        self._settle = dt.timedelta(seconds=0.0 if database.is_sqlite else _SETTLE_SECONDS)
        self._next_sweep = 0.0  # monotonic

    def tick(self) -> int:
        """Remove the checkpoints of the runs ended by the next settled events, when a sweep is
        due; always 0 (runs created)."""
        now = time.monotonic()
        if now < self._next_sweep:
            return 0
        self._next_sweep = now + _EVERY_SECONDS
        with self._database.read() as session:
            cursor = automation_queries.trigger_cursors(session).get(CURSOR)
        position = cursor.last_event_id if cursor is not None else self._start()
        with self._database.read() as session:
            events = automation_queries.events_after(session, _RUN_STATUS, position, _BATCH)
            settled_before = utcnow() - self._settle
            # Events are in id order: one not yet settled keeps those after it for a later tick.
            settled = list(takewhile(lambda event: event.created_at <= settled_before, events))
            ended = {event.run_id for event in settled if event.run_id is not None and event.data.get("to") in _ENDED}
            left = queries.unsucceeded_attempt_numbers(session, ended)
        if not settled:
            return 0
        if len(events) == _BATCH:
            self._next_sweep = now  # more history waits: go on at the next tick
        for run_id, numbers in left.items():
            try:
                checkpoints.discard(self._artifacts, self._state_dir, run_id, numbers)
            except Exception as exc:  # the store cannot be reached: the cursor stays, the next sweep retries
                log.warning("the checkpoints of run %s could not be removed: %s", run_id, exc)
                return 0
        # Lost to another server: it removed the same checkpoints; the next sweep goes on from its cursor.
        with suppress(ChangedMeanwhile), self._database.write() as session:
            automation_queries.move_cursor(session, CURSOR, from_id=position, to_id=settled[-1].id, at=utcnow())
        return 0

    def _start(self) -> int:
        """Place the cursor before the first event (idempotent); its position."""
        try:
            with self._database.write() as session:
                automation_queries.add_trigger_cursor(
                    session, TriggerCursorRow(name=CURSOR, last_event_id=0, updated_at=utcnow())
                )
        except AlreadyExists:
            pass  # another server placed it first, also at 0
        return 0
