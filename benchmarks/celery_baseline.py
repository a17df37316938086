"""The throughput figure's Celery + Redis column: a real Celery worker, started here as a
subprocess against the Redis of ``--redis-url``, running the same command as a no-op run.

Celery and redis-py are optional (``pip install -e '.[bench]'``): ``unavailable()`` says why the
column cannot be measured instead of failing the figure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpu import Spent, tree_cpu
from harness import Bench
from server import HERE

START_TIMEOUT = 120.0
JOB_TIMEOUT = 600.0


def unavailable(redis_url: str) -> str | None:
    """Why Celery + Redis cannot be measured here, or None when it can."""
    try:
        import celery  # noqa: F401
        import redis
    except ImportError as exc:
        return f"not measured: {exc.name} is not installed (pip install -e '.[bench]')"
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        return f"not measured: no Redis answers at {redis_url} ({exc})"
    return None


@dataclass(frozen=True)
class Worker:
    """A started Celery worker: its process and the task the benchmark submits to it."""

    process: subprocess.Popen[bytes]
    task: Any  # celery_app.noop

    def run(self, jobs: int, threads: int) -> tuple[float, Spent]:
        """Seconds from the first ``delay()`` until the last of ``jobs`` results is in, submitted by
        ``threads`` threads, and the CPU the worker's processes spent meanwhile."""
        before = tree_cpu(self.process.pid)
        start = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(lambda _: self.task.delay(), range(jobs)))
        for result in results:
            result.get(timeout=JOB_TIMEOUT)  # raises if the task failed
        took = time.perf_counter() - start
        return took, tree_cpu(self.process.pid).spent_since(before)


@contextmanager
def worker(bench: Bench, label: str) -> Iterator[Worker]:
    """A Celery worker with ``bench.slots`` prefork processes, its Redis database flushed before
    and after; it has run one warm-up job when this yields."""
    import celery_app
    import redis

    database = redis.Redis.from_url(bench.redis_url)
    database.flushdb()  # only the benchmark's own database
    celery_app.app.conf.update(broker_url=bench.redis_url, result_backend=bench.redis_url)
    log_path = bench.scratch / f"{label}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "celery",
        "--app",
        "celery_app",
        "worker",
        "--pool",
        "prefork",
        "--concurrency",
        str(bench.slots),
        "--loglevel",
        "WARNING",
        "--hostname",
        f"bench-{uuid.uuid4().hex[:8]}@%h",
    ]
    env = {
        **os.environ,
        celery_app.REDIS_URL_VARIABLE: bench.redis_url,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
    }
    with log_path.open("ab") as log:
        # A session of its own: stopping it reaches the pool and any command still running.
        process = subprocess.Popen(
            command, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _warm_up(celery_app.noop, process, log_path)
        yield Worker(process, celery_app.noop)
    finally:
        _stop(process)
        database.flushdb()
        database.close()


def _warm_up(task: Any, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """One job, waited for: the worker is up and its pool started."""
    result = task.delay()
    deadline = time.monotonic() + START_TIMEOUT
    while not result.ready():
        if process.poll() is not None:
            raise RuntimeError(f"the Celery worker exited at start:\n{_tail(log_path)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Celery worker ran no job within {START_TIMEOUT:.0f} s:\n{_tail(log_path)}")
        time.sleep(0.05)
    result.get(timeout=JOB_TIMEOUT)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the worker (a warm shutdown: it stops its pool), SIGKILL to its session if it is
    not gone in 30 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""
