"""Run and attempt states, and their tables of allowed transitions."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    PREEMPTED = "preempted"
    LOST = "lost"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


class AttemptStatus(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    LOST = "lost"
    PREEMPTED = "preempted"


FINAL_RUN_STATES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.CANCELLED})
ACTIVE_RUN_STATES = frozenset(set(RunStatus) - FINAL_RUN_STATES)
ACTIVE_ATTEMPT_STATES = frozenset({AttemptStatus.STARTING, AttemptStatus.RUNNING})
FINAL_ATTEMPT_STATES = frozenset(set(AttemptStatus) - ACTIVE_ATTEMPT_STATES)

# The states a run is born in: queued (a request, a pipeline step), running (a pipeline run,
# which runs through its steps from the start), succeeded (a cache hit, answered at once).
INITIAL_RUN_STATES = frozenset({RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.SUCCEEDED})

# Where a run may go from each state. `preempted` and `lost` are passed through on the way back
# to `queued` (or to `failed` once the retry budget is spent); `starting|running -> queued`
# retries a failed attempt; `queued -> failed` ends a run that can never start.
ALLOWED_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.QUEUED: frozenset({RunStatus.STARTING, RunStatus.CANCELLED, RunStatus.FAILED}),
    RunStatus.STARTING: frozenset(
        {
            RunStatus.RUNNING,
            RunStatus.PREEMPTED,
            RunStatus.LOST,
            RunStatus.FAILED,
            RunStatus.CANCELLED,
            RunStatus.QUEUED,
        }
    ),
    RunStatus.RUNNING: frozenset(
        {
            RunStatus.SUCCEEDED,
            RunStatus.FAILED,
            RunStatus.TIMED_OUT,
            RunStatus.CANCELLED,
            RunStatus.PREEMPTED,
            RunStatus.LOST,
            RunStatus.QUEUED,
        }
    ),
    RunStatus.PREEMPTED: frozenset({RunStatus.QUEUED, RunStatus.FAILED, RunStatus.CANCELLED}),
    RunStatus.LOST: frozenset({RunStatus.QUEUED, RunStatus.FAILED, RunStatus.CANCELLED}),
    RunStatus.SUCCEEDED: frozenset(),
    RunStatus.FAILED: frozenset(),
    RunStatus.TIMED_OUT: frozenset(),
    RunStatus.CANCELLED: frozenset(),
}


def sources_of(target: RunStatus) -> frozenset[RunStatus]:
    """The states from which a run may move to ``target``."""
    return frozenset(state for state, targets in ALLOWED_TRANSITIONS.items() if target in targets)


# Where an attempt may go from each state. An attempt is born starting; it may end before its
# runner reported the model's start (a launch that failed, a stop or a loss before the start).
ALLOWED_ATTEMPT_TRANSITIONS: dict[AttemptStatus, frozenset[AttemptStatus]] = {
    AttemptStatus.STARTING: frozenset({AttemptStatus.RUNNING}) | FINAL_ATTEMPT_STATES,
    AttemptStatus.RUNNING: FINAL_ATTEMPT_STATES,
    **{ended: frozenset() for ended in FINAL_ATTEMPT_STATES},
}


# Running first: an attempt mostly ends while it runs, so the first compare-and-set mostly hits.
_BY_LIKELIHOOD = sorted(ALLOWED_ATTEMPT_TRANSITIONS, key=lambda state: state != AttemptStatus.RUNNING)
_ATTEMPT_SOURCES = {
    target: tuple(state for state in _BY_LIKELIHOOD if target in ALLOWED_ATTEMPT_TRANSITIONS[state])
    for target in AttemptStatus
}


def attempt_sources_of(target: AttemptStatus) -> tuple[AttemptStatus, ...]:
    """The states from which an attempt may move to ``target``, the likeliest first."""
    return _ATTEMPT_SOURCES[target]
