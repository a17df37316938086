"""The Celery app of the throughput figure's Celery + Redis column: one task that runs the same
command as a no-op run. The benchmark imports it to submit; the worker it starts imports it too
(``celery -A celery_app worker``), finding the Redis database in ``BENCH_CELERY_REDIS_URL``."""

from __future__ import annotations

import os
import subprocess
import sys

from celery import Celery

REDIS_URL_VARIABLE = "BENCH_CELERY_REDIS_URL"

# Broker and results in one Redis database of the benchmark's own; otherwise Celery's defaults.
app = Celery("modelrunner_bench")
app.conf.update(
    broker_url=os.environ.get(REDIS_URL_VARIABLE, "redis://127.0.0.1:6379/11"),
    result_backend=os.environ.get(REDIS_URL_VARIABLE, "redis://127.0.0.1:6379/11"),
    broker_connection_retry_on_startup=True,  # silences Celery 5's deprecation warning at start
)


@app.task(name="noop")  # type: ignore[untyped-decorator]  # celery has no type hints
def noop() -> None:
    """``python -c pass``, as the platform's noop model runs it (with this interpreter)."""
    subprocess.run([sys.executable, "-c", "pass"], check=True)
