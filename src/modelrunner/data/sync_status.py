"""The states of a dataset sync and the table of their allowed changes."""

from __future__ import annotations

from enum import StrEnum

from modelrunner.engine.state_machine import TransitionTable


class SyncStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


ACTIVE_SYNC_STATES = frozenset({SyncStatus.QUEUED, SyncStatus.RUNNING})

# A sync is born queued; queued -> failed when the server that owned it stopped before it began.
SYNC_TRANSITIONS = TransitionTable(
    "sync",
    {
        SyncStatus.QUEUED: {SyncStatus.RUNNING, SyncStatus.FAILED},
        SyncStatus.RUNNING: {SyncStatus.SUCCEEDED, SyncStatus.FAILED},
        SyncStatus.SUCCEEDED: set(),
        SyncStatus.FAILED: set(),
    },
)
