"""The platform in one process: store, workspace, artifacts, the local backend and the dispatcher,
built from one Settings object. ``modelrunner serve`` wraps it in the HTTP API."""

from __future__ import annotations

from typing import Any

from modelrunner.artifacts.logs import LogStore
from modelrunner.artifacts.store import ArtifactStore
from modelrunner.backends.local import LocalBackend, LocalConfig
from modelrunner.engine.cache_mode import CacheMode
from modelrunner.engine.catalog import VersionCatalog
from modelrunner.engine.dispatcher import Dispatcher
from modelrunner.engine.submit import Submission, SubmitOutcome, Submitter
from modelrunner.metrics import Metrics
from modelrunner.settings import Settings
from modelrunner.spec.workspace import Workspace
from modelrunner.store import migrate
from modelrunner.store.database import Database


class Platform:
    """Everything one ``modelrunner serve`` process owns. ``start()`` applies migrations first."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.workspace = Workspace(settings.workspace)
        self.database = Database(settings.resolved_database_url)
        self.artifacts = ArtifactStore(settings.resolved_artifacts_url)
        self.logs = LogStore(settings.state_dir / "logs")
        self.catalog = VersionCatalog()
        self.metrics = Metrics(self.database)
        self.backend = LocalBackend(
            LocalConfig(settings.local_slots, settings.grace_seconds, settings.state_dir),
            self.artifacts,
            self.logs,
            wake=self._wake,
        )
        self.dispatcher = Dispatcher(
            self.database,
            self.catalog,
            self.backend,
            lease_seconds=settings.lease_seconds,
            poll_seconds=settings.poll_seconds,
            on_attempt_finished=self.metrics.observe_attempt,
        )
        self.submitter = Submitter(self.database, self.workspace, self.artifacts)

    def start(self) -> None:
        migrate.upgrade(self.database)
        self.dispatcher.start()

    def stop(self) -> None:
        self.dispatcher.stop()
        self.backend.close()
        self.database.dispose()

    def submit(
        self, model: str, params: Any, cache: CacheMode = CacheMode.USE, max_age: float | None = None
    ) -> Submission:
        submission = self.submitter.submit(model, params, cache, max_age)
        if submission.outcome == SubmitOutcome.CREATED:
            self.dispatcher.wake(queued=True)
        return submission

    def _wake(self) -> None:
        self.dispatcher.wake()
