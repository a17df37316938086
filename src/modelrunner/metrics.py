"""Prometheus metrics: run counts read from the store at scrape time, attempt durations observed."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from modelrunner.engine.states import RunStatus
from modelrunner.store import queries
from modelrunner.store.database import Database


class _StoreCollector(Collector):
    def __init__(self, database: Database) -> None:
        self._database = database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._database.read() as session:
            counts = queries.count_runs_by_status(session)
        runs = GaugeMetricFamily("modelrunner_runs", "Runs in the store by status", labels=["status"])
        for status in RunStatus:
            runs.add_metric([status.value], counts.get(status.value, 0))
        yield runs
        yield GaugeMetricFamily(
            "modelrunner_queue_depth", "Runs waiting for an attempt", value=counts.get(RunStatus.QUEUED.value, 0)
        )


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

    def observe_attempt(self, seconds: float) -> None:
        self._durations.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
