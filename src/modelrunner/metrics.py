"""Prometheus metrics: what an operator alerts on.

Two kinds. Counted by this process as it happens (they start at 0 when it starts, as Prometheus
counters do; sum them over the servers of one store): attempts ended by backend and outcome,
launch failures, attempt durations, dataset sync failures. Read from the store at each scrape,
so every server of one store says the same: runs by status, and, each with one query that reads
only what waits (through an index) and never the history, the age of the oldest queued run and
the notifications not yet sent."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from modelrunner.clock import utcnow
from modelrunner.engine.states import AttemptStatus, RunStatus
from modelrunner.notify.states import DeliveryStatus
from modelrunner.store import notify_queries, queries
from modelrunner.store.database import Database

# How an attempt can end, and why one can fail to launch: every one is shown from the start (at 0),
# so that an alert on its increase sees the first one.
_OUTCOMES = (
    AttemptStatus.SUCCEEDED,
    AttemptStatus.FAILED,
    AttemptStatus.TIMED_OUT,
    AttemptStatus.CANCELLED,
    AttemptStatus.LOST,
    AttemptStatus.PREEMPTED,
)
LAUNCH_ERROR = "error"  # the backend raised: the attempt failed
LAUNCH_UNREACHABLE = "unreachable"  # the backend could not be reached: the run waits in the queue
_UNSENT = (DeliveryStatus.PENDING, DeliveryStatus.SENDING)


class _StoreCollector(Collector):
    def __init__(self, database: Database) -> None:
        self._database = database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._database.read() as session:
            counts = queries.count_runs_by_status(session)
            oldest = queries.oldest_queued_by_backend(session)
            unsent = notify_queries.count_unsent(session, [status.value for status in _UNSENT])
        now = utcnow()
        runs = GaugeMetricFamily("modelrunner_runs", "Runs in the store by status", labels=["status"])
        for status in RunStatus:
            runs.add_metric([status.value], counts.get(status.value, 0))
        yield runs
        yield GaugeMetricFamily(
            "modelrunner_queue_depth", "Runs waiting for an attempt", value=counts.get(RunStatus.QUEUED.value, 0)
        )
        age = GaugeMetricFamily(
            "modelrunner_oldest_queued_run_age_seconds",
            "Seconds since the oldest run waiting in a backend's queue was submitted (no sample: none waits)",
            labels=["backend"],
        )
        for backend, created in sorted(oldest.items()):
            age.add_metric([backend], max(0.0, (now - created).total_seconds()))
        yield age
        waiting = GaugeMetricFamily(
            "modelrunner_notifications_unsent",
            "Notifications (e-mails, webhooks, digests) created and not yet sent: pending a first try, a retry, "
            "or being sent",
            labels=["channel"],
        )
        for channel, count in sorted(unsent.items()):
            waiting.add_metric([channel], count)
        yield waiting


class Metrics:
    """One registry per platform (no process-wide globals)."""

    def __init__(self, database: Database) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_StoreCollector(database))
        self._durations = Histogram(
            "modelrunner_attempt_duration_seconds",
            "Wall time of attempts from process start to end",
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, float("inf")),
            registry=self.registry,
        )
        self._attempts = Counter(
            "modelrunner_attempts",
            "Attempts this server saw end, by backend and outcome (lost: its runner went silent; "
            "preempted: its capacity was taken back, or the server stopped)",
            labelnames=["backend", "outcome"],
            registry=self.registry,
        )
        self._launch_failures = Counter(
            "modelrunner_attempt_launch_failures",
            "Attempts a backend did not launch, by reason (error: the attempt failed; "
            "unreachable: its run waits in the queue until the backend answers)",
            labelnames=["backend", "reason"],
            registry=self.registry,
        )
        self._sync_failures = Counter(
            "modelrunner_dataset_sync_failures",
            "Dataset syncs that failed here, by dataset (the dataset's page in the web UI shows the error)",
            labelnames=["dataset"],
            registry=self.registry,
        )

    def add_backend(self, backend: str) -> None:
        """Show the backend's counters from now on, at 0 until something happens."""
        for outcome in _OUTCOMES:
            self._attempts.labels(backend, outcome.value)
        for reason in (LAUNCH_ERROR, LAUNCH_UNREACHABLE):
            self._launch_failures.labels(backend, reason)

    def attempt_ended(self, backend: str, outcome: AttemptStatus, seconds: float | None) -> None:
        """An attempt ended; ``seconds`` is how long its model ran (None: it never started)."""
        self._attempts.labels(backend, outcome.value).inc()
        if seconds is not None:
            self._durations.observe(seconds)

    def launch_failed(self, backend: str, reason: str) -> None:
        """``reason`` is LAUNCH_ERROR or LAUNCH_UNREACHABLE."""
        self._launch_failures.labels(backend, reason).inc()

    def sync_failed(self, dataset: str) -> None:
        self._sync_failures.labels(dataset).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
