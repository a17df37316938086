"""The platform in one process: store, workspace, artifacts, the local backend, the dispatcher and
the dataset poller, built from one Settings object. ``modelrunner serve`` wraps it in the HTTP API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelrunner.artifacts.logs import LogStore
from modelrunner.artifacts.store import ArtifactStore
from modelrunner.auth import accounts
from modelrunner.backends.local import LocalBackend, LocalConfig
from modelrunner.data.cache import DataCache
from modelrunner.data.poller import DataPoller
from modelrunner.data.source import Source
from modelrunner.data.sources import open_source
from modelrunner.data.sync import DatasetSyncs
from modelrunner.engine import attempts
from modelrunner.engine.automation import Automation
from modelrunner.engine.cache_mode import CacheMode
from modelrunner.engine.catalog import VersionCatalog
from modelrunner.engine.dispatcher import Dispatcher
from modelrunner.engine.scheduler import Scheduler
from modelrunner.engine.submit import Submission, SubmitOutcome, Submitter
from modelrunner.engine.triggers import Triggers
from modelrunner.metrics import Metrics
from modelrunner.settings import Settings
from modelrunner.spec.workspace import Workspace
from modelrunner.store import migrate
from modelrunner.store.database import Database
from modelrunner.store.tables import DatasetSyncRow


class Platform:
    """Everything one ``modelrunner serve`` process owns. ``start()`` applies migrations first."""

    def __init__(self, settings: Settings) -> None:
        settings, self.profile = settings.with_profile()
        self.settings = settings
        self.workspace = Workspace(settings.workspace)
        self.database = Database(settings.resolved_database_url)
        self.artifacts = ArtifactStore(settings.resolved_artifacts_url)
        self.logs = LogStore(settings.state_dir / "logs")
        self.catalog = VersionCatalog()
        self.metrics = Metrics(self.database)
        self.data_cache = DataCache(settings.state_dir / "data" / "versions", self.artifacts, self._source_of)
        self.backend = LocalBackend(
            LocalConfig(settings.local_slots, settings.grace_seconds, settings.state_dir),
            self.artifacts,
            self.logs,
            wake=self._wake,
            data=self.data_cache,
        )
        self.dispatcher = Dispatcher(
            self.database,
            self.catalog,
            self.backend,
            lease_seconds=settings.lease_seconds,
            poll_seconds=settings.poll_seconds,
            on_attempt_finished=self.metrics.observe_attempt,
            on_runs_changed=self._runs_changed,
        )
        self.submitter = Submitter(self.database, self.workspace, self.artifacts, publish=self.profile.publish)
        self.syncs = DatasetSyncs(
            self.database,
            self.workspace,
            self.artifacts,
            self.data_cache,
            self._source_of,
            staging=settings.state_dir / "data" / "staging",
            runner_id=self.dispatcher.runner_id,
        )
        self.poller = DataPoller(self.database, self.workspace, self.syncs, tick_seconds=settings.poll_seconds)
        self.scheduler = Scheduler(self.database, self.workspace, self.submitter, automatic=self.profile.automatic)
        self.triggers = Triggers(self.database, self.workspace, self.submitter, automatic=self.profile.automatic)
        self.automation = Automation(
            self.database,
            self.catalog,
            [self.scheduler, self.triggers],
            tick_seconds=settings.poll_seconds,
            on_queued=lambda: self.dispatcher.wake(queued=True),
        )

    def prepare_store(self) -> bool:
        """Apply migrations and create the first site admin on a store without users; whether it
        was created now. Idempotent."""
        migrate.upgrade(self.database)
        with self.database.write() as session:
            return accounts.ensure_first_admin(session)

    def start(self) -> None:
        self.prepare_store()
        self.dispatcher.start()
        self.poller.start()
        self.automation.start()

    def stop(self) -> None:
        self.automation.stop()
        self.poller.stop()
        self.dispatcher.stop()
        self.backend.close()
        self.database.dispose()

    def submit(
        self,
        model: str,
        params: Any,
        cache: CacheMode = CacheMode.USE,
        max_age: float | None = None,
        inputs: Mapping[str, str] | None = None,
    ) -> Submission:
        submission = self.submitter.submit(model, params, cache, max_age, inputs)
        if submission.outcome == SubmitOutcome.CREATED:
            self.dispatcher.wake(queued=True)
        return submission

    def rerun(self, run_id: int, *, from_step: str | None = None, only_step: str | None = None) -> Submission:
        """Compute a run again (a pipeline: from one step, or one step only); see Submitter.rerun."""
        submission = self.submitter.rerun(run_id, from_step=from_step, only_step=only_step)
        if submission.outcome == SubmitOutcome.CREATED:
            self.dispatcher.wake(queued=True)
        return submission

    def cancel(self, run_id: int) -> None:
        """Cancel a run (and a pipeline run's unfinished steps); idempotent."""
        with self.database.write() as session:
            attempts.cancel(session, run_id)
        self.dispatcher.wake(cancelled=True)

    def request_sync(self, dataset: str, *, walk_all: bool = False) -> tuple[DatasetSyncRow, bool]:
        """Queue a sync of ``dataset`` for the poller (or join the one in progress)."""
        sync, created = self.syncs.request(dataset, walk_all=walk_all)
        self.poller.wake()
        return sync, created

    def _wake(self) -> None:
        self.dispatcher.wake()

    def _runs_changed(self) -> None:
        self.automation.wake()

    def _source_of(self, dataset: str) -> Source:
        return open_source(
            dataset,
            self.workspace.dataset(dataset),
            workspace_root=self.workspace.root,
            state_dir=self.settings.state_dir,
        )
