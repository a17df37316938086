"""What an attempt needs to run, and what comes out of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelrunner.artifacts.store import StoredFile
from modelrunner.engine.states import AttemptStatus
from modelrunner.spec.model_spec import Resources


@dataclass(frozen=True)
class JobInput:
    """An input of the run: the data version whose files appear in ``MODELRUNNER_INPUTS/<name>/``."""

    name: str
    dataset: str
    version: str
    folder: str | None = None  # only this folder of the version (a folder input: spec/input_folders.py)


@dataclass(frozen=True)
class UpstreamFile:
    """An output of a step this run needs, copied to ``MODELRUNNER_INPUTS/<folder>/<path>``."""

    folder: str  # "<step>" or "<step>/<item>"
    path: str
    uri: str


@dataclass(frozen=True)
class AttemptJob:
    """Everything a backend needs to execute one attempt of one run."""

    run_id: int
    attempt_id: int
    attempt_number: int
    model_name: str
    model_version: str
    command: list[str]  # empty when the form (a notebook, an image) brings its own
    params: dict[str, Any]
    snapshot_uri: str
    notebook: str | None = None  # the model form: see StepSpec
    image: str | None = None
    environment: str | None = None
    declared_outputs: tuple[str, ...] = ()
    slots: int = 1
    # As the model asks, its class filled in: a backend maps them to its own terms.
    resources: Resources = field(default_factory=Resources)
    inputs: tuple[JobInput, ...] = ()
    upstream: tuple[UpstreamFile, ...] = ()
    item: str | None = None  # a fan-out child's item, as JSON (MODELRUNNER_ITEM)
    # No retry follows if this attempt is lost or preempted (its run's `retries.lost` are spent):
    # a backend with interruptible capacity (Fargate Spot) may run it on reliable capacity.
    last_attempt: bool = False
    # Where and with what the attempt may report its progress over HTTP (a remote runner does).
    callback_url: str | None = None
    callback_token: str | None = field(default=None, repr=False)
    # Variables of the runner's environment the model sees too (``model_environment:``).
    passed_variables: tuple[str, ...] = ()
    progress_bars: bool = True  # progress bars the model prints move its progress (``progress: {bars: ...}``)
    # MODELRUNNER_PROFILE and the profile's `env:`, as the run's cache key holds them (run_profile).
    profile_variables: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended. ``outputs`` are stored already when ``status`` is succeeded.

    ``partial_outputs``: what a failed, timed out or cancelled attempt had written to its outputs
    folder, stored for debugging; never its run's result (no cache hit, no input downstream)."""

    status: AttemptStatus
    exit_code: int | None = None
    error: str | None = None
    outputs: list[StoredFile] = field(default_factory=list)
    partial_outputs: list[StoredFile] = field(default_factory=list)


_STOPPED_BECAUSE = {
    AttemptStatus.TIMED_OUT: "the run timed out",
    AttemptStatus.LOST: "the attempt was stopped as lost",
    AttemptStatus.PREEMPTED: "the attempt was stopped, to be run again (its runner was taken away)",
}


def stop_message(reason: AttemptStatus) -> str:
    """Why an attempt stopped for ``reason`` (cancelled, timed_out, lost, preempted) ended, in words."""
    return _STOPPED_BECAUSE.get(reason, "the run was cancelled")


def stopped(reason: AttemptStatus, exit_code: int | None = None) -> Outcome:
    """How an attempt ended that was stopped for ``reason`` (what the engine or the runner asked
    for), whatever its model did meanwhile."""
    return Outcome(reason, exit_code=exit_code, error=stop_message(reason))
