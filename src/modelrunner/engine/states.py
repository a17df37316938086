"""Run and attempt states, and the one table of allowed run transitions."""

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
