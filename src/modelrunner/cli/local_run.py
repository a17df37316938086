"""``modelrunner run --local``: one attempt of a model on this machine, without a server.

The model runs under the same contract as on the platform (``execution.process``); its outputs
are copied to an output folder with their sizes and sha256 digests, beside its log. A pipeline
or a model with dataset inputs needs a store (step runs, a cache, data versions): those run on a
platform of their own instead (``cli.local_platform``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from modelrunner import units
from modelrunner.artifacts.store import ArtifactStore
from modelrunner.backends.container import local_run_process
from modelrunner.cli import output
from modelrunner.cli.configuration import build_settings
from modelrunner.cli.params_input import combine, read_params_file
from modelrunner.cli.progress_view import RunProgress
from modelrunner.cli.run_view import outputs_table
from modelrunner.engine.cache_mode import CacheMode
from modelrunner.engine.states import AttemptStatus
from modelrunner.errors import ModelrunnerError
from modelrunner.execution.environments import ENVIRONMENTS_FOLDER, Environments
from modelrunner.execution.job import AttemptJob, Outcome
from modelrunner.execution.process import AttemptProcess
from modelrunner.execution.supervision import SupervisorService
from modelrunner.spec.model_spec import Resources
from modelrunner.spec.overrides import checked_overrides
from modelrunner.spec.params import validate_params
from modelrunner.spec.workspace import Model, Workspace

LOG_NAME = "modelrunner.log"
DEFAULT_OUTPUTS = Path("modelrunner-outputs")
_LOG_TAIL_LINES = 15
_EXIT_CODES = {AttemptStatus.SUCCEEDED: 0, AttemptStatus.CANCELLED: 130}


@dataclass(frozen=True)
class LocalOptions:
    """What ``run --local`` takes besides the parameters: the store's options are used by the
    local platform only (a single model without inputs always computes, with no store); the
    run's own ``overrides`` (spec/overrides.py) by both."""

    cache: CacheMode = CacheMode.USE
    max_age: float | None = None
    pins: dict[str, str] = field(default_factory=dict)
    store_dir: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


def run_locally(
    model_name: str,
    assignments: list[str] | None,
    params_file: Path | None,
    workspace_dir: Path,
    output_dir: Path | None,
    json_output: bool,
    options: LocalOptions | None = None,
) -> int:
    """Run ``model_name`` once; return the exit code (0 succeeded, 130 interrupted, else 1)."""
    options = options or LocalOptions()
    workspace = Workspace(workspace_dir)
    model = workspace.model(model_name)
    resources = model.spec.in_classes(workspace.resource_classes()).resources
    raw = combine(model.spec.params, read_params_file(params_file), assignments)
    params = validate_params(model.spec.params, raw)
    overrides = checked_overrides(model.name, model.spec.overridable, options.overrides)
    resources = resources.model_copy(update=overrides)
    if model.spec.is_pipeline or model.spec.inputs:
        from modelrunner.cli.local_platform import LocalRequest, run_on_platform

        request = LocalRequest(model, params, options.pins, options.cache, options.max_age, options.overrides)
        destination = _output_folder(output_dir, model_name)
        return run_on_platform(request, workspace_dir, options.store_dir, destination, json_output)
    _refuse_store_options(model, options)
    destination = _output_folder(output_dir, model_name)
    settings = build_settings(workspace=workspace_dir)
    environments = Environments(settings.state_dir / ENVIRONMENTS_FOLDER)
    outcome, took = _execute(model, resources, params, destination, settings.grace_seconds, environments)
    if json_output:
        output.print_json(_summary(model, params, outcome, destination, took))
    else:
        _print_outcome(model, outcome, destination, took)
    return _EXIT_CODES.get(outcome.status, 1)


def _refuse_store_options(model: Model, options: LocalOptions) -> None:
    """A clear error for options only a store gives meaning to, before anything runs."""
    if options.pins:
        raise ModelrunnerError(f"--input: model '{model.name}' has no dataset inputs")
    if options.cache != CacheMode.USE or options.max_age is not None:
        raise ModelrunnerError(
            f"--cache and --max-age: a local run of model '{model.name}' (no steps, no dataset inputs) always "
            "computes; they apply to local pipelines and models with dataset inputs, and on a server"
        )


def _output_folder(chosen: Path | None, model_name: str) -> Path:
    if chosen is not None:
        if chosen.exists() and any(chosen.iterdir()):
            raise ModelrunnerError(f"the output folder {chosen} is not empty; choose another --output-dir")
        chosen.mkdir(parents=True, exist_ok=True)
        return chosen.resolve()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    for suffix in ("", *(f"-{n}" for n in range(2, 100))):
        candidate = DEFAULT_OUTPUTS / f"{model_name}-{stamp}{suffix}"
        try:
            candidate.mkdir(parents=True)
        except FileExistsError:
            continue
        return candidate.resolve()
    raise ModelrunnerError(f"cannot create a new output folder in {DEFAULT_OUTPUTS}; choose --output-dir")


def _execute(
    model: Model,
    resources: Resources,
    params: dict[str, Any],
    destination: Path,
    grace: float,
    environments: Environments,
) -> tuple[Outcome, float]:
    """Run the attempt in a thread while this one shows progress and handles Ctrl-C and timeout."""
    part = model.spec.part(None)
    job = AttemptJob(
        run_id=0,
        attempt_id=0,
        attempt_number=1,
        model_name=model.name,
        model_version=model.version,
        command=list(part.command or ()),
        notebook=part.notebook,
        image=part.image,
        environment=part.environment,
        params=params,
        snapshot_uri="",
        declared_outputs=tuple(o.path for o in model.spec.outputs),
        slots=resources.slots,
        resources=resources,
        progress_bars=model.spec.progress.bars,
    )
    store = ArtifactStore(str(destination.parent))
    results: list[Outcome] = []
    started = time.monotonic()
    supervisors = SupervisorService()
    with tempfile.TemporaryDirectory(prefix="modelrunner-local-") as temporary, contextlib.closing(supervisors):
        # An image model runs in its container, as on a container backend.
        process = (local_run_process if job.image is not None else AttemptProcess)(
            job,
            model_folder=model.folder,
            scratch=Path(temporary, "scratch"),
            checkpoint=Path(temporary, "checkpoint"),
            log_path=destination / LOG_NAME,
            grace_seconds=grace,
            supervisors=supervisors,
            environments=environments,
        )
        with RunProgress(f"{model.name} (local)") as bar:

            def attempt() -> None:
                try:
                    outcome = process.run(
                        on_started=lambda _pid: bar.update(0.0, "", "running"),
                        on_progress=lambda fraction, message: bar.update(fraction, message, "running"),
                        upload=lambda folder: store.put_folder(folder, destination.name),
                    )
                except Exception as exc:  # the outcome must be reported however the attempt ends
                    outcome = Outcome(AttemptStatus.FAILED, error=f"modelrunner could not run the model: {exc}")
                results.append(outcome)
                done.set()

            done = threading.Event()
            worker = threading.Thread(target=attempt, name="local-attempt", daemon=True)
            bar.update(None, "starting", "starting")
            with sigterm_as_interrupt():
                worker.start()
                _wait(done, process, resources.timeout)
            outcome = results[0]
            bar.update(1.0 if outcome.status == AttemptStatus.SUCCEEDED else None, outcome.error or "", outcome.status)
    return outcome, time.monotonic() - started


def _wait(done: threading.Event, process: AttemptProcess, timeout: float | None) -> None:
    # Polls with sleep: a KeyboardInterrupt inside Thread.join can leave the thread looking dead.
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while not done.is_set():
            time.sleep(0.1)
            if deadline is not None and time.monotonic() > deadline:
                process.stop(AttemptStatus.TIMED_OUT)
    except KeyboardInterrupt:
        output.hint("stopping the model...")
        process.stop(AttemptStatus.CANCELLED)
    # Never leave before the model's processes are gone: the kill timer lives in this process.
    while not done.is_set():
        try:
            time.sleep(0.1)
        except KeyboardInterrupt:
            output.hint("still stopping the model (it gets SIGKILL after the grace period)...")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM to this command stops the model as Ctrl-C does, so no model process is orphaned."""

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _print_outcome(model: Model, outcome: Outcome, destination: Path, took: float) -> None:
    console = output.stdout()
    line = output.status(outcome.status.value)
    line = output.cell(f"{model.name} (local, version {model.version}) ").append_text(line)
    line.append(f" in {units.duration(took)}")
    if outcome.error:
        line.append(f": {outcome.error}")
    console.print(line)
    log = destination / LOG_NAME
    if outcome.status == AttemptStatus.SUCCEEDED:
        if outcome.outputs:
            console.print(
                outputs_table([{"path": f.path, "size": f.size, "sha256": f.sha256} for f in outcome.outputs])
            )
        console.print(output.cell(f"outputs in {destination}"))
    else:
        if outcome.partial_outputs:
            rows = [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in outcome.partial_outputs]
            console.print(outputs_table(rows, title="partial outputs (not a result)"))
            console.print(output.cell(f"partial outputs in {destination}"))
        tail = _tail(log) if outcome.status != AttemptStatus.CANCELLED else ""
        if tail:
            output.stderr().print(output.cell(f"last lines of the log:\n{tail}"))
    console.print(output.cell(f"log: {log}"))


def _summary(model: Model, params: dict[str, Any], outcome: Outcome, destination: Path, took: float) -> dict[str, Any]:
    return {
        "model": model.name,
        "model_version": model.version,
        "params": params,
        "status": outcome.status.value,
        "exit_code": outcome.exit_code,
        "error": outcome.error,
        "duration_seconds": round(took, 3),
        "output_dir": str(destination),
        "log": str(destination / LOG_NAME),
        "outputs": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in outcome.outputs],
        "partial_outputs": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in outcome.partial_outputs],
    }


def _tail(log: Path) -> str:
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(line for line in lines[-_LOG_TAIL_LINES:] if not line.startswith("::progress::"))
