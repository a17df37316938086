"""``modelrunner run --local`` for a pipeline or a model with dataset inputs: the platform itself,
in this process, on a store of its own.

A pipeline needs what a server gives it (step runs, a cache, fan-out, ``needs: {x: item}``
chains, ``when:``) and a dataset input needs recorded data versions; rather than a second engine,
the same engine runs here: a ``Platform`` on a SQLite store in a local folder (``--store-dir``,
``<state dir>/local-runs`` by default), its dispatcher and pipeline automation started, and every
backend of the workspace replaced by this machine (image steps in podman or docker, as ``run
--local`` runs an image model). Schedules, triggers, the dataset poller and notifications are
not started: a local run runs what it was asked, nothing else. Its datasets are synced into the
store first, as the server's poller would, and a second identical run is answered from the
store's cache. The outputs and the log (each step's, headed) are copied to the output folder as
a single model's are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

from modelrunner import units
from modelrunner.backends.base import Backend
from modelrunner.backends.container import local_run_process
from modelrunner.backends.local import LocalBackend, LocalConfig
from modelrunner.cli import output
from modelrunner.cli.local_run import sigterm_as_interrupt
from modelrunner.cli.progress_view import RunProgress
from modelrunner.cli.run_view import outputs_table
from modelrunner.engine.automation import Automation
from modelrunner.engine.cache_mode import CacheMode
from modelrunner.engine.states import RunStatus
from modelrunner.engine.submit import SubmitOutcome
from modelrunner.errors import ModelrunnerError
from modelrunner.execution import checkpoints
from modelrunner.execution.environments import ENVIRONMENTS_FOLDER, Environments
from modelrunner.execution.job import AttemptJob
from modelrunner.execution.process import AttemptProcess
from modelrunner.platform import Platform
from modelrunner.settings import Settings
from modelrunner.spec.backend_spec import BackendSpec, LocalBackendSpec
from modelrunner.spec.workspace import Model
from modelrunner.store import queries
from modelrunner.store.tables import RunKind, RunRow

LOG_NAME = "modelrunner.log"
STORE_FOLDER = "local-runs"
PLATFORM_LOG = "platform.log"
_FINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.CANCELLED})
_EXIT_CODES = {RunStatus.SUCCEEDED: 0, RunStatus.CANCELLED: 130}
_POLL_SECONDS = 0.2


class _ThisMachine(LocalBackend):
    """Every backend of a local run: commands and notebooks as processes, images in a container
    of this machine's podman or docker, all as the user running the command (as ``run --local``
    runs a single model)."""

    def __init__(self, config: LocalConfig, environments: Environments, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._environments = environments  # shared with single-model local runs: built once

    def _new_process(self, job: AttemptJob) -> AttemptProcess:
        if job.image is None:
            return super()._new_process(job)
        return local_run_process(
            job,
            model_folder=self._model_folder(job.snapshot_uri),
            scratch=self._scratch(job.run_id, job.attempt_number),
            checkpoint=checkpoints.local_folder(self._config.state_dir, job.run_id),
            log_path=self._logs.path(job.run_id, job.attempt_number),
            grace_seconds=self._config.grace_seconds,
            supervisors=self._supervisors,
            environment=self._environment,
            data_folder=self._data.folder if self._data is not None else None,
            fetch_file=self._artifacts.get_file,
        )


class LocalPlatform(Platform):
    """The platform of one local run: its engine and pipelines, no schedules, triggers, poller
    or notifications; every declared backend runs attempts on this machine."""

    def __init__(self, settings: Settings, environments: Environments) -> None:
        self._shared_environments = environments
        super().__init__(settings)
        self.automation = Automation(
            self.database,
            self.catalog,
            [],
            tick_seconds=settings.poll_seconds,
            on_queued=lambda: self.dispatcher.wake(queued=True),
        )

    def start(self) -> None:
        self.prepare_store()
        self.dispatcher.start()
        self.automation.start()

    def stop(self) -> None:
        self.stopping.set()
        self.automation.stop()
        self.dispatcher.stop()
        for backend in self.backends.values():
            backend.close()
        self.database.dispose()

    def _declared_backends(self) -> dict[str, BackendSpec]:
        # Every name routing may choose runs here, so a model routed to Slurm runs locally too.
        return {name: LocalBackendSpec(type="local") for name in super()._declared_backends()}

    def _build_backend(self, name: str, spec: BackendSpec) -> Backend:
        # One per name: a dispatcher reads its backend's reports, so two must not share one.
        del spec
        settings = self.settings
        config = LocalConfig(settings.local_slots, settings.grace_seconds, settings.state_dir)
        return _ThisMachine(
            config,
            self._shared_environments,
            artifacts=self.artifacts,
            logs=self.logs,
            wake=partial(self._wake, name),
            data=self.data_cache,
        )


@dataclass(frozen=True)
class LocalRequest:
    model: Model
    params: dict[str, Any]
    pins: dict[str, str]
    cache: CacheMode
    max_age: float | None
    overrides: dict[str, Any]


def run_on_platform(
    request: LocalRequest, workspace_dir: Path, store_dir: Path | None, destination: Path, json_output: bool
) -> int:
    """Run ``request`` on a local platform; write its outputs and log to ``destination``; return
    the exit code (0 succeeded, 130 interrupted, else 1)."""
    from modelrunner.cli.configuration import build_settings

    base = build_settings(workspace=workspace_dir)
    store = (store_dir or base.state_dir / STORE_FOLDER).resolve()
    store.mkdir(parents=True, exist_ok=True)
    # Given explicitly, so no profile's or environment's server database or artifact store is used.
    settings = build_settings(
        workspace=workspace_dir,
        data_dir=store,
        database_url=f"sqlite:///{store / 'modelrunner.db'}",
        artifacts_url=str(store / "artifacts"),
    )
    environments = Environments(base.state_dir / ENVIRONMENTS_FOLDER)
    started = time.monotonic()
    with _platform_log(store / PLATFORM_LOG):
        platform = LocalPlatform(settings, environments)
        try:
            platform.start()
            with RunProgress(f"{request.model.name} (local)") as bar, sigterm_as_interrupt():
                _sync_datasets(platform, request.model, bar)
                run, outcome = _submit(platform, request)
                run = _follow(platform, run, bar)
                _settle(platform, settings.grace_seconds)
            took = time.monotonic() - started
            report = _collect(platform, run, outcome, destination)
        finally:
            platform.stop()
    if json_output:
        output.print_json(_summary(request, report, destination, took))
    else:
        _print(request.model, report, destination, took)
    return _EXIT_CODES.get(RunStatus(report.run.status), 1)


@contextmanager
def _platform_log(path: Path) -> Iterator[None]:
    """The platform's own log lines (the dispatcher's, a sync's warnings) go to a file of the store,
    not over the progress bar."""
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")  # the last local run's
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("modelrunner")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
        handler.close()


def _datasets(model: Model) -> list[str]:
    spec = model.spec
    names = set(spec.inputs.values())
    return sorted(names)


def _sync_datasets(platform: LocalPlatform, model: Model, bar: RunProgress) -> None:
    """Record the new versions of each dataset the model reads, as the server's poller would."""
    for dataset in _datasets(model):
        bar.update(None, f"syncing dataset {dataset}", "syncing")
        synced = platform.syncs.sync(dataset)
        if synced.status != "succeeded":
            raise ModelrunnerError(f"the sync of dataset '{dataset}' failed: {synced.error or 'no reason given'}")


def _submit(platform: LocalPlatform, request: LocalRequest) -> tuple[RunRow, SubmitOutcome]:
    submission = platform.submit(
        request.model.name, request.params, request.cache, request.max_age, request.pins, overrides=request.overrides
    )
    return submission.run, submission.outcome


def _follow(platform: LocalPlatform, run: RunRow, bar: RunProgress) -> RunRow:
    """Wait for the run to end, showing its progress; Ctrl-C cancels it and waits for its end."""
    cancelling = False
    while True:
        try:
            with platform.database.read() as session:
                current = queries.get_run(session, run.id) or run
            bar.update(current.progress_fraction, current.progress_message or "", current.status)
            if current.status in _FINAL:
                return current
            time.sleep(_POLL_SECONDS)
        except KeyboardInterrupt:
            if not cancelling:
                output.hint("stopping the run...")
                platform.cancel(run.id)
                cancelling = True
            else:
                output.hint("still stopping the run (its models get SIGKILL after the grace period)...")


def _settle(platform: LocalPlatform, grace: float) -> None:
    """Wait until no attempt of the store is going (a cancelled pipeline's steps get SIGTERM, then
    SIGKILL after the grace period), so this command never leaves a model process behind."""
    deadline = time.monotonic() + grace + 30
    while time.monotonic() < deadline:
        try:
            with platform.database.read() as session:
                if not queries.active_attempts(session):
                    return
            time.sleep(_POLL_SECONDS)
        except KeyboardInterrupt:
            output.hint("still stopping the run (its models get SIGKILL after the grace period)...")


@dataclass(frozen=True)
class _Report:
    run: RunRow
    outcome: SubmitOutcome
    outputs: list[dict[str, Any]]
    steps: list[dict[str, Any]]


def _collect(platform: LocalPlatform, run: RunRow, outcome: SubmitOutcome, destination: Path) -> _Report:
    """Copy the run's outputs and its log (a pipeline's: each step's, headed) to ``destination``."""
    with platform.database.read() as session:
        files = queries.outputs_of(session, run.id)
        computed = queries.get_run(session, run.source_run_id) if run.cache_hit and run.source_run_id else run
        computed = computed or run
        children = queries.children_of(session, computed.id) if run.kind == RunKind.PIPELINE else []
        sources = {c.id: (queries.get_run(session, c.id) or run) for c in children}
    for stored in files:
        relative = PurePosixPath(stored.path)
        if relative.is_absolute() or ".." in relative.parts:
            continue  # never written outside the output folder
        target = destination.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        platform.artifacts.get_file(stored.uri, target)
    with (destination / LOG_NAME).open("wb") as log:
        if not children:
            log.write(_log_of(platform, computed))
        for child in children:
            row = sources[child.id]
            name = child.step + (f"[{child.item_key}]" if child.item_key is not None else "")
            text = _log_of(platform, row)
            log.write(f"==> step {name}: {child.status} <==\n".encode() + text)
            if text and not text.endswith(b"\n"):
                log.write(b"\n")
    steps = []
    for child in children:
        row = sources[child.id]
        steps.append(
            {
                "step": child.step,
                "item": child.item_key,
                "status": child.status,
                "cache_hit": bool(run.cache_hit or row.cache_hit),
            }
        )
    outputs = [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in files]
    return _Report(run, outcome, outputs, steps)


def _log_of(platform: LocalPlatform, run: RunRow) -> bytes:
    """The log of the run that computed ``run``'s result."""
    run_id = run.source_run_id if run.cache_hit and run.source_run_id is not None else run.id
    page = platform.logs.read(run_id, 0, 1 << 40)
    return page.data


def _summary(request: LocalRequest, report: _Report, destination: Path, took: float) -> dict[str, Any]:
    run = report.run
    return {
        "model": request.model.name,
        "model_version": run.model_version,
        "params": run.params,
        "status": run.status,
        "run_id": run.id,
        "submission": report.outcome.value,
        "cache_hit": bool(run.cache_hit),
        "source_run_id": run.source_run_id,
        "error": run.error,
        "duration_seconds": round(took, 3),
        "output_dir": str(destination),
        "log": str(destination / LOG_NAME),
        "outputs": report.outputs,
        "steps": report.steps,
    }


def _print(model: Model, report: _Report, destination: Path, took: float) -> None:
    console = output.stdout()
    run = report.run
    line = output.cell(f"{model.name} (local, version {run.model_version}, run {run.id}) ")
    line.append_text(output.status(run.status))
    if report.outcome == SubmitOutcome.CACHE_HIT:
        line.append(f" from the local cache (run {run.source_run_id})")
    else:
        line.append(f" in {units.duration(took)}")
    if run.error:
        line.append(f": {run.error}")
    console.print(line)
    if report.steps:
        table = output.table("step", "item", "status", "computed")
        for step in report.steps:
            table.add_row(
                output.cell(step["step"]),
                output.cell(step["item"] or ""),
                output.status(step["status"]),
                output.cell("from the cache" if step["cache_hit"] else "now"),
            )
        console.print(table)
    if report.outputs:
        console.print(outputs_table(report.outputs))
        console.print(output.cell(f"outputs in {destination}"))
    console.print(output.cell(f"log: {destination / LOG_NAME}"))
