"""The states of a dataset sync: queued -> running -> succeeded | failed (queued -> failed when
the server that owned it stopped)."""

from __future__ import annotations

from enum import StrEnum


class SyncStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


ACTIVE_SYNC_STATES = frozenset({SyncStatus.QUEUED, SyncStatus.RUNNING})
