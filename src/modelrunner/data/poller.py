"""The dataset poller of ``serve``: queues a sync of each dataset whose poll interval has passed,
and runs queued syncs (asked for over HTTP, or due) a few at a time."""

from __future__ import annotations

import datetime as dt
import logging
from concurrent.futures import Future, ThreadPoolExecutor

from modelrunner.clock import utcnow
from modelrunner.data.sync import DatasetSyncs
from modelrunner.errors import ModelrunnerError
from modelrunner.service_loop import ServiceLoop
from modelrunner.spec.workspace import Workspace
from modelrunner.store import data_queries
from modelrunner.store.database import Database

log = logging.getLogger("modelrunner.data")


class DataPoller:
    """One thread that decides what to sync; the syncs themselves run in a small pool."""

    def __init__(
        self, database: Database, workspace: Workspace, syncs: DatasetSyncs, *, tick_seconds: float, workers: int = 2
    ) -> None:
        self._database = database
        self._workspace = workspace
        self._syncs = syncs
        self._workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dataset-sync")
        self._running: dict[int, Future[object]] = {}
        self._loop = ServiceLoop("data-poller", self._round, interval=tick_seconds, log=log)

    def start(self) -> None:
        """Fail the syncs a dead server on this host left running (they recorded nothing), then poll."""
        failed = self._syncs.fail_abandoned("interrupted: the server running it stopped; nothing was recorded")
        if failed:
            log.warning("%d dataset sync(s) of a stopped server marked failed", failed)
        self._loop.start()

    def wake(self) -> None:
        """Look at the queue now (a sync was requested)."""
        self._loop.wake()

    def stop(self) -> None:
        """Stop polling. Syncs still running are failed: what they found is not recorded."""
        self._loop.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._syncs.fail_abandoned("interrupted: the server stopped; nothing was recorded", only_this_process=True)

    def _round(self) -> None:
        self._queue_due()
        self._start_queued()

    def _queue_due(self) -> None:
        try:
            datasets = self._workspace.datasets()
        except ModelrunnerError:
            return  # a broken modelrunner.yaml: `modelrunner check` says why; keep the last syncs
        polled = {name: spec.poll for name, spec in datasets.items() if spec.poll is not None}
        if not polled:
            return
        with self._database.read() as session:
            last = {name: data_queries.last_requested(session, name) for name in polled}
        now = utcnow()
        for name, interval in polled.items():
            previous = last[name]
            if previous is None or previous + dt.timedelta(seconds=interval) <= now:
                self._syncs.request(name, reason="poll")

    def _start_queued(self) -> None:
        self._running = {i: f for i, f in self._running.items() if not f.done()}
        if len(self._running) >= self._workers:
            return
        with self._database.read() as session:
            queued = [row.id for row in data_queries.queued_syncs(session)]
        for sync_id in queued[: self._workers - len(self._running)]:
            if self._syncs.claim(sync_id):
                self._running[sync_id] = self._pool.submit(self._execute, sync_id)

    def _execute(self, sync_id: int) -> None:
        self._syncs.execute(sync_id)
        self._loop.wake()  # a worker is free: look at the queue
