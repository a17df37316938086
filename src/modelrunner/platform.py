"""The platform in one process: store, workspace, artifacts, the backends with a dispatcher each,
and the dataset poller, built from one Settings object. ``modelrunner serve`` wraps it in the HTTP
API."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from modelrunner.artifacts.logs import LogStore, logs_folder
from modelrunner.artifacts.store import ArtifactStore
from modelrunner.auth import accounts
from modelrunner.auth.principal import Principal
from modelrunner.auth.secret_keys import SecretKeys
from modelrunner.auth.verified_tokens import VerifiedTokens
from modelrunner.backends import registry as backend_registry
from modelrunner.backends.base import Backend, RemoteServices
from modelrunner.backends.registry import BackendContext
from modelrunner.data.cache import DataCache
from modelrunner.data.managed_writes import ManagedWrites
from modelrunner.data.poller import DataPoller
from modelrunner.data.source import Source
from modelrunner.data.sources import open_source
from modelrunner.data.sync import DatasetSyncs
from modelrunner.engine import attempts, backend_overview
from modelrunner.engine.automation import Automation
from modelrunner.engine.backend_overview import BackendOverview
from modelrunner.engine.cache_mode import CacheMode
from modelrunner.engine.catalog import VersionCatalog
from modelrunner.engine.checkpoint_sweep import CheckpointSweep
from modelrunner.engine.dispatcher import Dispatcher, Dispatchers
from modelrunner.engine.run_profile import RunProfile
from modelrunner.engine.scheduler import Scheduler
from modelrunner.engine.submit import RunRequest, Submission, SubmitOutcome, Submitter
from modelrunner.engine.triggers import Triggers
from modelrunner.errors import SpecError
from modelrunner.metrics import Metrics
from modelrunner.notify import webhook_secrets
from modelrunner.notify.notifier import Notifier
from modelrunner.settings import Settings
from modelrunner.spec.backend_spec import DEFAULT_BACKEND, BackendSpec, LocalBackendSpec
from modelrunner.spec.param_limits import ParamLimits, check_param_sizes
from modelrunner.spec.workspace import Workspace
from modelrunner.store import migrate, queries
from modelrunner.store.database import Database
from modelrunner.store.tables import DatasetSyncRow, RunKind

log = logging.getLogger("modelrunner.platform")


class Platform:
    """Everything one ``modelrunner serve`` process owns. ``start()`` applies migrations first."""

    def __init__(self, settings: Settings) -> None:
        settings, self.profile = settings.with_profile()
        self.settings = settings
        self.workspace = Workspace(settings.workspace)
        self.database = Database(settings.resolved_database_url)
        self.secret_keys = SecretKeys.of(settings)
        self.verified_tokens = VerifiedTokens(self.database)
        self.artifacts = ArtifactStore(settings.resolved_artifacts_url)
        self.logs = LogStore(logs_folder(settings.state_dir))
        self.catalog = VersionCatalog(self.workspace.resource_classes)
        self.metrics = Metrics(self.database)
        self.data_cache = DataCache(settings.state_dir / "data" / "versions", self.artifacts, self._source_of)
        # The backends declared when the server starts, each with its dispatcher; runs routed to
        # a backend declared later wait in the queue until a restart.
        self.backends = {name: self._build_backend(name, spec) for name, spec in self._declared_backends().items()}
        self.dispatcher = Dispatchers(
            {
                name: Dispatcher(
                    self.database,
                    self.catalog,
                    backend,
                    backend_name=name,
                    lease_seconds=settings.lease_seconds,
                    poll_seconds=settings.poll_seconds,
                    callback_url=settings.resolved_public_url,
                    metrics=self.metrics,
                    on_runs_changed=self._runs_changed,
                    model_environment=self._model_environment,
                    artifacts_url=self.artifacts.url,
                )
                for name, backend in self.backends.items()
            }
        )
        self.submitter = Submitter(
            self.database,
            self.workspace,
            self.artifacts,
            publish=self.profile.publish,
            profile=RunProfile.of(settings.profile, self.profile),
        )
        self.syncs = DatasetSyncs(
            self.database,
            self.workspace,
            self.artifacts,
            self.data_cache,
            self._source_of,
            staging=settings.state_dir / "data" / "staging",
            runner_id=self.dispatcher.runner_id,
            on_failed=self.metrics.sync_failed,
        )
        self.managed = ManagedWrites(
            self.database,
            self.workspace,
            self.artifacts,
            self.data_cache,
            self.syncs,
            staging=settings.state_dir / "data" / "staging",
            max_file_bytes=settings.max_upload_bytes,
        )
        self.poller = DataPoller(self.database, self.workspace, self.syncs, tick_seconds=settings.poll_seconds)
        self.scheduler = Scheduler(self.database, self.workspace, self.submitter, automatic=self.profile.automatic)
        self.triggers = Triggers(self.database, self.workspace, self.submitter, automatic=self.profile.automatic)
        self.automation = Automation(
            self.database,
            self.catalog,
            [self.scheduler, self.triggers, CheckpointSweep(self.database, self.artifacts, settings.state_dir)],
            tick_seconds=settings.poll_seconds,
            on_queued=lambda: self.dispatcher.wake(queued=True),
        )
        # Set once the server is asked to stop: requests held open on purpose (a run page's event
        # stream, a worker's claim) end at once instead of holding the shutdown up.
        self.stopping = threading.Event()
        self.notifier = Notifier(
            self.database,
            self.workspace,
            self.secret_keys,
            artifacts=self.artifacts,
            runner_id=self.dispatcher.runner_id,
            default_base_url=settings.resolved_public_url,
            tick_seconds=settings.poll_seconds,
        )

    def prepare_store(self) -> bool:
        """Apply migrations and create the first site admin on a store without users; whether it
        was created now. Idempotent. SecretKeyError if the secrets key cannot read the stored
        webhook secrets."""
        migrate.upgrade(self.database, secret_keys=self.secret_keys)
        webhook_secrets.check_readable(self.database, self.secret_keys)
        with self.database.write() as session:
            return accounts.ensure_first_admin(session)

    def start(self) -> None:
        self.prepare_store()
        self._report_unserved_queue()
        self.dispatcher.start()
        self.poller.start()
        self.automation.start()
        if self.profile.notify:
            self.notifier.start()
        else:
            self.notifier.prepare()

    def stop(self) -> None:
        self.stopping.set()
        self.notifier.stop()
        self.automation.stop()
        self.poller.stop()
        self.dispatcher.stop()
        for backend in self.backends.values():
            backend.close()
        self.database.dispose()

    def submit(
        self,
        model: str,
        params: Any,
        cache: CacheMode = CacheMode.USE,
        max_age: float | None = None,
        inputs: Mapping[str, str] | None = None,
        *,
        submitter: Principal | None = None,
        backend: str | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Submission:
        """Submit a run of ``submitter``'s (None: the platform's own), on the requested
        ``backend`` or where routing sends it, with its own ``overrides`` (spec/overrides.py); see
        Submitter.submit. InvalidInput, too, for parameters over the server's size limits."""
        settings = self.settings
        check_param_sizes(
            params, ParamLimits(settings.max_params, settings.max_param_string_length, settings.max_param_list_length)
        )
        submission = self.submitter.submit(
            model, params, cache, max_age, inputs, submitter=submitter, backend=backend, overrides=overrides
        )
        self._queued(submission)
        return submission

    def submit_many(
        self, model: str, requests: Sequence[RunRequest], *, submitter: Principal | None = None
    ) -> list[Submission]:
        """Submit a batch of runs of ``submitter``'s, all or none; see Submitter.submit_many
        (BatchRefused lists parameters over the server's size limits too). The dispatcher of
        each backend given new runs is woken once, however many."""
        settings = self.settings
        limits = ParamLimits(settings.max_params, settings.max_param_string_length, settings.max_param_list_length)
        submissions = self.submitter.submit_many(
            model, requests, submitter=submitter, check_params=lambda params: check_param_sizes(params, limits)
        )
        # One new run of each backend (and kind: a pipeline wakes the automation too) wakes for all.
        created = {(s.run.backend, s.run.kind): s for s in submissions if s.outcome == SubmitOutcome.CREATED}
        for submission in created.values():
            self._queued(submission)
        return submissions

    def rerun(
        self,
        run_id: int,
        *,
        from_step: str | None = None,
        only_step: str | None = None,
        submitter: Principal | None = None,
    ) -> Submission:
        """Compute a run again (a pipeline: from one step, or one step only) at ``submitter``'s
        request; see Submitter.rerun."""
        submission = self.submitter.rerun(run_id, from_step=from_step, only_step=only_step, submitter=submitter)
        self._queued(submission)
        return submission

    def cancel(self, run_id: int) -> None:
        """Cancel a run (and a pipeline run's unfinished steps); idempotent."""
        with self.database.write() as session:
            attempts.cancel(session, run_id)
        self.dispatcher.wake(cancelled=True)

    def backend_overview(self) -> list[BackendOverview]:
        """Each backend declared now (and any other with runs), its health and its load."""
        with self.database.read() as session:
            return backend_overview.overview(session, self._declared_backends(), self.backends)

    def request_sync(self, dataset: str, *, walk_all: bool = False) -> tuple[DatasetSyncRow, bool]:
        """Queue a sync of ``dataset`` for the poller (or join the one in progress)."""
        sync, created = self.syncs.request(dataset, walk_all=walk_all)
        self.poller.wake()
        return sync, created

    def _queued(self, submission: Submission) -> None:
        """Wake the dispatcher of a new run's backend (a pipeline's steps run on its backend)."""
        if submission.outcome != SubmitOutcome.CREATED:
            return
        backend = submission.run.backend
        if backend not in self.dispatcher:
            log.warning(
                "run %s waits in the queue for backend '%s', which this server does not run (it runs: %s); "
                "restart `modelrunner serve` to start the backends declared since it started",
                submission.run.id,
                backend,
                ", ".join(self.dispatcher.backends),
            )
        self.dispatcher.wake(queued=True, backend=backend)
        if submission.run.kind == RunKind.PIPELINE:
            self.automation.wake()  # its steps advance as they end

    def _declared_backends(self) -> dict[str, BackendSpec]:
        try:
            return self.workspace.spec().declared_backends()
        except SpecError as exc:
            # Nothing can be submitted before the file is fixed; what is queued for `local` still runs.
            log.warning("%s; running only the '%s' backend until a restart", exc.message, DEFAULT_BACKEND)
            return {DEFAULT_BACKEND: LocalBackendSpec()}

    def _model_environment(self) -> list[str]:
        try:
            return self.workspace.spec().model_environment
        except SpecError:
            return []  # said already, by _declared_backends

    def _build_backend(self, name: str, spec: BackendSpec) -> Backend:
        context = BackendContext(
            services=RemoteServices(self.artifacts, self.logs, self.settings.grace_seconds, partial(self._wake, name)),
            wake_for_work=lambda: self.dispatcher.wake(queued=True, backend=name),
            artifacts=self.artifacts,
            logs=self.logs,
            data_cache=self.data_cache,
            state_dir=self.settings.state_dir,
            local_slots=self.settings.local_slots,
            grace_seconds=self.settings.grace_seconds,
        )
        return backend_registry.build(name, spec, context)

    def _report_unserved_queue(self) -> None:
        """Say so when runs wait for backends this server does not run: nothing here claims them."""
        with self.database.read() as session:
            waiting = queries.queued_counts_by_backend(session)
        for backend, count in sorted(waiting.items()):
            if backend not in self.dispatcher:
                log.warning(
                    "%s queued run(s) wait for backend '%s', which this server does not run (it runs: %s); "
                    "declare it under `backends:` in modelrunner.yaml and restart, or cancel them",
                    count,
                    backend,
                    ", ".join(self.dispatcher.backends),
                )

    def _wake(self, backend: str) -> None:
        self.dispatcher.wake(backend=backend)

    def _runs_changed(self) -> None:
        self.automation.runs_ended()
        self.notifier.runs_ended()

    def _source_of(self, dataset: str) -> Source:
        return open_source(
            dataset,
            self.workspace.dataset(dataset),
            workspace_root=self.workspace.root,
            state_dir=self.settings.state_dir,
        )
