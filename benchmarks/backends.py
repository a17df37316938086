"""Figure: 500 no-op runs through each backend that runs on this machine, against running the same
command 500 times with plain ``subprocess`` at the same concurrency, in the same run."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from client import Api, instant, status_counts, submit_all
from harness import WORKSPACE, Bench
from report import Figure, median, ms, percentile
from server import Server

RUNS = 500
QUICK_RUNS = 100
CLIENT_THREADS = 4

WORKERS = 2  # `modelrunner worker` processes serving the worker pool


@dataclass(frozen=True)
class Backend:
    """A backend to measure: its `backends:` entry (set up before the server starts, e.g. a Dask
    cluster), and what must run beside the server once it is up (workers)."""

    declared: Callable[[Bench], AbstractContextManager[dict[str, Any]]]
    beside: Callable[[Bench, Server], AbstractContextManager[None]] | None = None


@contextmanager
def _local(bench: Bench) -> Iterator[dict[str, Any]]:
    yield {"type": "local", "slots": bench.slots}


@contextmanager
def _dask(bench: Bench) -> Iterator[dict[str, Any]]:
    import distributed

    # One worker process with a thread per slot, as a small cluster's worker would be.
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=bench.slots, processes=True, dashboard_address=None
    ) as cluster:
        yield {"type": "dask", "scheduler": cluster.scheduler_address, "slots": bench.slots}


@contextmanager
def _pool(bench: Bench) -> Iterator[dict[str, Any]]:
    yield {"type": "worker", "slots": bench.slots}


@contextmanager
def _workers(bench: Bench, server: Server) -> Iterator[None]:
    """WORKERS `modelrunner worker` processes on loopback, sharing the slots between them."""
    slots = max(1, bench.slots // WORKERS)
    env = {**server.env, "MODELRUNNER_TOKEN": server.token}
    command = [sys.executable, "-m", "modelrunner", "worker", "--pool", "worker", "--server", server.url]
    with (bench.scratch / "workers.log").open("ab") as log:
        processes = [
            subprocess.Popen([*command, "--slots", str(slots)], env=env, stdout=log, stderr=subprocess.STDOUT)
            for _ in range(WORKERS)
        ]
        try:
            yield
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=60)


BACKENDS = {"local": Backend(_local), "worker": Backend(_pool, _workers), "dask": Backend(_dask)}


def spawn_baseline(runs: int, workers: int) -> float:
    """Seconds to run ``python -c pass`` ``runs`` times, ``workers`` at a time."""

    def spawn(_: int) -> None:
        subprocess.run([sys.executable, "-c", "pass"], check=True)

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(spawn, range(runs)))
    return time.perf_counter() - start


def _workspace(bench: Bench, name: str, backend: dict[str, Any]) -> Path:
    """The benchmark workspace with ``backend`` as its only backend."""
    folder = bench.scratch / f"workspace-{name}"
    shutil.copytree(WORKSPACE, folder)
    config = folder / "modelrunner.yaml"
    spec = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**spec, "backends": {name: backend}}))
    return folder


def through(bench: Bench, name: str, runs: int) -> tuple[float, list[float]]:
    """Seconds from the first submit until the last run is final, and every run's submit-to-start."""
    chosen = BACKENDS[name]
    with (
        chosen.declared(bench) as backend,
        bench.server(f"backends-{name}", workspace=str(_workspace(bench, name, backend))) as (server, _),
        chosen.beside(bench, server) if chosen.beside else nullcontext(),
    ):
        api = Api(server.url, server.token)
        api.wait_final(api.submit({"i": -1})["id"], first_poll=0.05, poll=0.02, timeout=120)  # warm
        start = time.time()
        ids = set(submit_all(server.url, server.token, [{"i": i} for i in range(runs)], CLIENT_THREADS))
        api.wait_idle(poll=0.25, timeout=1200)
        found = [r for r in api.all_runs() if r["id"] in ids]
        api.close()
    counts = status_counts(found)
    if counts != {"succeeded": runs}:
        raise RuntimeError(f"backends ({name}): expected {runs} succeeded runs, got {counts}")
    end = max(instant(r["finished_at"]) for r in found).timestamp()
    latencies = [(instant(r["started_at"]) - instant(r["created_at"])).total_seconds() for r in found]
    return end - start, latencies


def measure(bench: Bench) -> list[Figure]:
    runs = QUICK_RUNS if bench.quick else RUNS
    baseline = spawn_baseline(runs, bench.slots)
    figures = []
    for name in BACKENDS:
        took, latencies = through(bench, name, runs)
        figures.append(
            Figure(
                f"backends: {name}",
                f"{runs / took:.1f} runs/s; submit-to-start median {ms(median(latencies))}",
                f"{runs / baseline:.1f} runs/s (subprocess)",
                f"{baseline / took:.2f} of subprocess's rate",
                "(information)",
                None,
                notes=[
                    f"{runs} no-op runs submitted by {CLIENT_THREADS} client threads all up front; {bench.slots} slots",
                    f"the backend: {took:.1f} s; plain subprocess, {bench.slots} at a time: {baseline:.1f} s",
                    f"submit-to-start (started_at - created_at): median {ms(median(latencies))}, "
                    f"p90 {ms(percentile(latencies, 0.9))}, mean {ms(statistics.fmean(latencies))} "
                    "(queueing included: all runs are submitted at once)",
                ],
            )
        )
    return figures
