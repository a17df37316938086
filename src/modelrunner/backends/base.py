"""The backend contract: launch, observe and stop attempts. Leases, retries and timeouts are
the engine's business, not a backend's."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from modelrunner.artifacts.logs import LogStore
from modelrunner.artifacts.store import ArtifactStore
from modelrunner.engine.states import AttemptStatus
from modelrunner.errors import ModelrunnerError
from modelrunner.execution.job import AttemptJob, Outcome

Handle = dict[str, Any]
"""JSON-able description of a launched attempt, stored with the attempt so that any process can
later cancel it (also after a crash of the process that launched it)."""


@dataclass(frozen=True)
class Started:
    """The model's process is running since ``at``."""

    attempt_id: int
    handle: Handle
    at: dt.datetime


@dataclass(frozen=True)
class Progressed:
    attempt_id: int
    fraction: float
    message: str


@dataclass(frozen=True)
class Finished:
    attempt_id: int
    outcome: Outcome


Report = Started | Progressed | Finished


class BackendUnavailable(ModelrunnerError):
    """What ``submit`` raises when the backend cannot reach its engine now (a connection refused
    or timed out, an engine answering that it is overloaded or down): nothing was launched. The
    run waits in the queue, spending no retry, until ``health`` says the engine answers again.
    Any other error from ``submit`` fails the attempt."""


@dataclass(frozen=True)
class RemoteServices:
    """What the platform lends a backend whose attempts run elsewhere: the artifact store they
    reach under the same URL (outputs, outcome, log, checkpoint), the log store it copies each
    ended attempt's log into, the grace period between SIGTERM and SIGKILL, and ``wake``, to call
    when there is something to poll."""

    artifacts: ArtifactStore
    logs: LogStore
    grace_seconds: float
    wake: Callable[[], None]


class Backend(Protocol):
    """What every compute backend implements."""

    type: ClassVar[str]

    def free_slots(self) -> int:
        """How many more slots of work the backend takes now."""

    def health(self) -> str | None:
        """None when the backend can reach its engine (a scheduler, a cluster's API); else what
        is wrong, for a person to act on. Returns within a few seconds."""

    def submit(self, job: AttemptJob) -> Handle:
        """Launch the attempt; return at once with its handle."""

    def poll(self, handles: Sequence[Handle]) -> list[Report]:
        """What happened to these attempts since the last poll, in order."""

    def cancel(self, handle: Handle, reason: AttemptStatus) -> None:
        """Stop the attempt (SIGTERM, then kill after the grace period); idempotent.

        Must also work on a handle from a process that no longer exists, so that work orphaned
        by a crash is stopped before its run is retried.
        """

    def close(self) -> None:
        """The server stops: stop launching and let go of what the backend holds (for the local
        backend, wait for its stopped attempts to record how they ended)."""


@runtime_checkable
class RunnerLeases(Protocol):
    """What a backend adds to its contract when the runners it hands attempts to renew their
    stored leases themselves (the worker pool: each heartbeat of a worker renews its attempt's
    lease through the API). The dispatcher renews the leases of the other attempts it holds.

    When a runner lets the lease run out, the dispatcher calls ``cancel(handle, LOST)``: the
    backend forgets the attempt, so that its runner's later calls are refused, and reports how it
    ended (lost; or cancelled or timed out when the runner had been told to stop)."""

    def runner_lease_seconds(self, attempt_id: int) -> float | None:
        """None while no runner holds the attempt (the dispatcher keeps its lease); else how long
        a sign of life from its runner keeps it, the grace period included once the runner has
        been told to stop the model."""
