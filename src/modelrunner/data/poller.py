"""The dataset poller of ``serve``: queues a sync of each dataset whose poll interval has passed,
and runs queued syncs (asked for over HTTP, or due) a few at a time."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from modelrunner.clock import utcnow
from modelrunner.data.sync import DatasetSyncs
from modelrunner.errors import ModelrunnerError
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
        self._tick = tick_seconds
        self._workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dataset-sync")
        self._running: dict[int, Future[object]] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Fail the syncs a dead server on this host left running (they recorded nothing), then poll."""
        failed = self._syncs.fail_abandoned("interrupted: the server running it stopped; nothing was recorded")
        if failed:
            log.warning("%d dataset sync(s) of a stopped server marked failed", failed)
        self._thread = threading.Thread(target=self._loop, name="data-poller", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look at the queue now (a sync was requested)."""
        self._wake.set()

    def stop(self) -> None:
        """Stop polling. Syncs still running are failed: what they found is not recorded."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._syncs.fail_abandoned("interrupted: the server stopped; nothing was recorded", only_this_process=True)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._queue_due()
                self._start_queued()
            except Exception:  # the poller must outlive a broken workspace file or a store hiccup
                log.exception("dataset poller tick failed")
            self._wake.wait(self._tick)
            self._wake.clear()

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
        self._wake.set()  # a worker is free: look at the queue
