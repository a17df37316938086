"""Syncing a dataset: asking its source for new versions and recording them, all or nothing.

A sync is a row that moves queued -> running -> succeeded | failed (``SYNC_TRANSITIONS``), every
change through ``_move``. Requests for a dataset that is already syncing join the sync in progress.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from modelrunner.artifacts.store import ArtifactStore
from modelrunner.clock import utcnow
from modelrunner.data.cache import DataCache, snapshot_prefix
from modelrunner.data.source import FoundVersion, KnownVersion, Source
from modelrunner.data.sync_status import SYNC_TRANSITIONS, SyncStatus
from modelrunner.engine.runner_identity import is_dead_runner
from modelrunner.engine.state_machine import change_status
from modelrunner.errors import AlreadyExists, Conflict, ModelrunnerError, NotFound
from modelrunner.spec.dataset_spec import ManagedDataset
from modelrunner.spec.workspace import Workspace
from modelrunner.store import data_queries, queries
from modelrunner.store.database import Database
from modelrunner.store.tables import DatasetSyncRow, DatasetVersionRow

log = logging.getLogger("modelrunner.data")

VERSION_ADDED = "dataset.version_added"
_PROGRESS_EVERY = 0.5  # seconds between progress writes: a long walk must not flood the store


class DatasetSyncs:
    """Requests, runs and recovers the syncs of a workspace's datasets."""

    def __init__(
        self,
        database: Database,
        workspace: Workspace,
        artifacts: ArtifactStore,
        cache: DataCache,
        source_of: Callable[[str], Source],
        staging: Path,
        runner_id: str,
        on_failed: Callable[[str], None] = lambda dataset: None,
    ) -> None:
        """``on_failed`` is told the dataset of each sync that fails here."""
        self._database = database
        self._workspace = workspace
        self._artifacts = artifacts
        self._cache = cache
        self._source_of = source_of
        self._staging = staging
        self._runner_id = runner_id
        self._on_failed = on_failed

    @property
    def runner_id(self) -> str:
        """This process's id, as its running syncs name it (a dead one's are failed at restart)."""
        return self._runner_id

    def request(self, dataset: str, *, walk_all: bool = False, reason: str = "request") -> tuple[DatasetSyncRow, bool]:
        """Queue a sync of ``dataset``; if one is queued or running already, that one (and False).
        NotFound for a dataset the workspace does not declare."""
        self._workspace.dataset(dataset)
        with self._database.write() as session:
            active = data_queries.active_sync(session, dataset)
            if active is not None:
                return active, False
            row = DatasetSyncRow(
                dataset=dataset, status=SyncStatus.QUEUED.value, walk_all=walk_all, reason=reason, created_at=utcnow()
            )
            try:
                with session.begin_nested():
                    data_queries.add_sync(session, row)
            except AlreadyExists:
                active = data_queries.active_sync(session, dataset)  # a concurrent request (PostgreSQL)
                if active is None:
                    raise
                return active, False
            return row, True

    def get(self, sync_id: int) -> DatasetSyncRow:
        with self._database.read() as session:
            row = data_queries.get_sync(session, sync_id)
        if row is None:
            raise NotFound(f"unknown sync {sync_id}", sync=sync_id)
        return row

    def claim(self, sync_id: int) -> bool:
        """Take a queued sync for this process; False if another took it or it ended."""
        with self._database.write() as session:
            return move_sync(session, sync_id, SyncStatus.RUNNING, runner_id=self._runner_id, started_at=utcnow())

    def execute(self, sync_id: int) -> DatasetSyncRow:
        """Do a claimed sync to its end and record the outcome; the finished row."""
        row = self.get(sync_id)
        staging = self._staging / f"{sync_id}-{uuid.uuid4().hex[:8]}"
        staging.mkdir(parents=True, exist_ok=True)
        reporter = _ProgressWriter(self._database, sync_id)
        try:
            source = self._source_of(row.dataset)
            with self._database.read() as session:
                known = data_queries.known_versions(session, row.dataset)
                newest = data_queries.newest_version(session, row.dataset)
            found = source.discover(
                known.__contains__,
                KnownVersion(newest.version, newest.meta) if newest else None,
                walk_all=row.walk_all,
                staging=staging,
                progress=reporter,
            )
            found = [f for f in found if f.version not in known]
            if not source.keeps_history:
                reporter(None, "storing the new version")
                snapshots = {f.version: self._keep(row.dataset, f.version, staging / f.version) for f in found}
            else:
                snapshots = {}
            with self._database.write() as session:
                finished = move_sync(
                    session,
                    sync_id,
                    SyncStatus.SUCCEEDED,
                    added=len(found),
                    finished_at=utcnow(),
                    progress_fraction=1.0,
                    progress_message=_summary(found),
                )
                if finished:  # else it was failed meanwhile (its server stopping): record nothing
                    record_versions(session, row, found, snapshots)
            if not finished:
                return self.get(sync_id)
            for f in found:
                if f.version in snapshots:
                    self._cache.adopt(row.dataset, f.version, staging / f.version)
            log.info("dataset %s: %s", row.dataset, _summary(found))
        except Exception as exc:
            message = exc.message if isinstance(exc, ModelrunnerError) else f"{type(exc).__name__}: {exc}"
            if isinstance(exc, ModelrunnerError):
                log.warning("dataset %s: sync %s failed: %s", row.dataset, sync_id, message)
            else:
                log.exception("dataset %s: sync %s failed", row.dataset, sync_id)
            with self._database.write() as session:
                move_sync(session, sync_id, SyncStatus.FAILED, error=message, finished_at=utcnow())
            self._on_failed(row.dataset)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self.get(sync_id)

    def sync(self, dataset: str, *, walk_all: bool = False) -> DatasetSyncRow:
        """Request a sync and do it here, now; if another process is syncing the dataset, Conflict."""
        row, created = self.request(dataset, walk_all=walk_all)
        if not created or not self.claim(row.id):
            raise Conflict(f"dataset '{dataset}' is being synced already (sync {row.id})", sync=row.id)
        return self.execute(row.id)

    def fail_abandoned(self, reason: str, *, only_this_process: bool = False) -> int:
        """Fail the running syncs whose process on this host is gone (or, with
        ``only_this_process``, this process's own); how many."""
        with self._database.write() as session:
            abandoned = [
                r.id
                for r in data_queries.running_syncs(session)
                if r.runner_id
                and (r.runner_id == self._runner_id if only_this_process else is_dead_runner(r.runner_id))
            ]
            for sync_id in abandoned:
                move_sync(session, sync_id, SyncStatus.FAILED, error=reason, finished_at=utcnow())
        return len(abandoned)

    def delete_versions(self, dataset: str) -> int:
        """Forget every recorded version of ``dataset``; how many. Conflict while unfinished runs
        use it or a sync of it is queued or running (it would record versions again). A managed
        dataset's versions are its only record: Conflict, always."""
        if isinstance(self._workspace.dataset(dataset), ManagedDataset):
            raise Conflict(
                f"dataset '{dataset}' is managed: its versions are the only record of its changes and no sync "
                "would find them again; they are kept",
                dataset=dataset,
            )
        with self._database.write() as session:
            syncing = data_queries.active_sync(session, dataset)
            if syncing is not None:
                raise Conflict(
                    f"dataset '{dataset}' is being synced (sync {syncing.id}); delete its versions when it ends",
                    sync=syncing.id,
                )
            using = queries.active_runs_using_dataset(session, dataset)
            if using:
                shown = ", ".join(map(str, using[:10])) + (" ..." if len(using) > 10 else "")
                raise Conflict(
                    f"dataset '{dataset}' is used by {len(using)} unfinished run(s) ({shown}); "
                    "wait for them or cancel them first",
                    runs=using,
                )
            deleted = data_queries.delete_versions(session, dataset)
        self._cache.drop(dataset)
        return deleted

    def _keep(self, dataset: str, version: str, folder: Path) -> str:
        """Store the files of a version its source will not keep; the prefix's URI."""
        prefix = snapshot_prefix(dataset, version)
        self._artifacts.put_folder(folder, prefix)
        return self._artifacts.uri(prefix)


def move_sync(session: Session, sync_id: int, to: SyncStatus, **values: Any) -> bool:
    """The one way a sync changes state: compare-and-set from the states the table lets reach
    ``to``; False if the sync is elsewhere (another process moved it)."""
    return change_status(
        SYNC_TRANSITIONS,
        to,
        lambda sources: data_queries.set_sync_if(session, sync_id, sources, {"status": to.value, **values}),
    )


def record_versions(
    session: Session, sync: DatasetSyncRow, found: list[FoundVersion], snapshots: dict[str, str]
) -> None:
    """The versions and their events, oldest first so ids grow with the data's time."""
    now = utcnow()
    rows = [
        DatasetVersionRow(
            dataset=sync.dataset,
            version=f.version,
            time=f.time,
            discovered_at=now,
            summary=f.summary,
            files=[{"path": e.path, "size": e.size} for e in f.files],
            file_count=len(f.files),
            total_size=sum(e.size for e in f.files),
            meta=f.meta,
            snapshot_uri=snapshots.get(f.version),
            sync_id=sync.id,
        )
        for f in reversed(found)
    ]
    data_queries.add_versions(session, rows)
    queries.add_events(
        session,
        [
            {
                "run_id": None,
                "type": VERSION_ADDED,
                "created_at": now,
                "data": {
                    "dataset": sync.dataset,
                    "version": row.version,
                    "time": row.time.isoformat(),
                    "summary": row.summary,
                    "sync_id": sync.id,
                    # Triggers act on the newest data: a version a sync found below a newer one
                    # (a first sync, a walk of the whole history) is recorded as back-fill.
                    "backfill": sync.walk_all or row is not rows[-1],
                },
            }
            for row in rows
        ],
    )


def _summary(found: list[FoundVersion]) -> str:
    if not found:
        return "no new version"
    return f"{len(found)} new version{'s' if len(found) != 1 else ''}, newest {found[0].version[:12]}"


class _ProgressWriter:
    """Records a sync's progress, at most every ``_PROGRESS_EVERY`` seconds."""

    def __init__(self, database: Database, sync_id: int) -> None:
        self._database = database
        self._sync_id = sync_id
        self._last = 0.0

    def __call__(self, fraction: float | None, message: str) -> None:
        now = time.monotonic()
        if now - self._last < _PROGRESS_EVERY:
            return
        self._last = now
        with self._database.write() as session:
            data_queries.set_sync_if(
                session,
                self._sync_id,
                [SyncStatus.RUNNING.value],
                {"progress_fraction": fraction, "progress_message": message[:500]},
            )
