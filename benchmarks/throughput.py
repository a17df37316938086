"""Figure 1: how long 300 no-op runs take through the platform, against spawning the same
command 300 times from plain Python with the same concurrency."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psutil
from client import Api, instant, status_counts, submit_all
from harness import Bench
from report import Figure, secs

RUNS = 300
CLIENT_THREADS = 4
TARGET = 1.3
ROUNDS = 3  # baseline and platform alternate; medians are compared (1 round with --quick)


@dataclass(frozen=True)
class Round:
    baseline: float
    platform: float
    submitted: float  # seconds until every POST was answered
    server_cpu: float  # CPU seconds of the server process itself (not of the models)


def spawn_baseline(runs: int, workers: int) -> float:
    """Seconds to run ``python -c pass`` ``runs`` times, ``workers`` at a time."""

    def spawn(_: int) -> None:
        subprocess.run([sys.executable, "-c", "pass"], check=True)

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(spawn, range(runs)))
    return time.perf_counter() - start


def through_platform(bench: Bench, label: str) -> tuple[float, float, float]:
    """Seconds from the first submit until the last of RUNS runs is final, seconds until every
    submit was answered, and the server's CPU seconds meanwhile."""
    with bench.server(label) as (server, _):
        api = Api(server.url, server.token)
        # One run first, so the model version is recorded and caches are warm before timing.
        api.wait_final(api.submit({"i": -1})["id"], first_poll=0.05, poll=0.02)
        process = psutil.Process(server.pid)
        cpu_before = sum(process.cpu_times()[:2])
        start = time.time()
        ids = set(submit_all(server.url, server.token, [{"i": i} for i in range(RUNS)], CLIENT_THREADS))
        submitted = time.time() - start
        # A slow poll keeps the client's load off the server; the end is read from the runs.
        api.wait_idle(poll=0.25, timeout=600)
        cpu = sum(process.cpu_times()[:2]) - cpu_before
        runs = [r for r in api.all_runs() if r["id"] in ids]
        api.close()
    counts = status_counts(runs)
    if counts != {"succeeded": RUNS}:
        raise RuntimeError(f"throughput: expected {RUNS} succeeded runs, got {counts}")
    # finished_at is written by the server on this machine's clock, the one time.time() reads.
    end = max(instant(r["finished_at"]) for r in runs).timestamp()
    return end - start, submitted, cpu


def measure(bench: Bench) -> list[Figure]:
    rounds = []
    for number in range(1 if bench.quick else ROUNDS):
        baseline = spawn_baseline(RUNS, bench.slots)
        platform, submitted, cpu = through_platform(bench, f"throughput-{number}")
        rounds.append(Round(baseline, platform, submitted, cpu))
    baseline = statistics.median(r.baseline for r in rounds)
    platform = statistics.median(r.platform for r in rounds)
    ratio = platform / baseline
    cpu_per_run = statistics.median(r.server_cpu for r in rounds) / RUNS
    return [
        Figure(
            name=f"throughput: {RUNS} no-op runs",
            measured=f"{secs(platform)} ({RUNS / platform:.0f} runs/s)",
            baseline=f"{secs(baseline)} plain subprocess.run",
            compared=f"ratio {ratio:.2f}",
            target=f"ratio ≤ {TARGET}",
            met=ratio <= TARGET,
            notes=[
                f"{bench.slots} local slots (os.cpu_count()); the baseline uses a ThreadPoolExecutor of "
                f"{bench.slots} workers; {CLIENT_THREADS} client threads submit all runs up front.",
                f"median of {len(rounds)} rounds, each a baseline then a fresh server: "
                + "; ".join(f"{r.platform:.2f} s / {r.baseline:.2f} s" for r in rounds)
                + ".",
                "platform time: first submit until the last run's finished_at; every POST was answered after "
                + ", ".join(secs(r.submitted) for r in rounds)
                + ".",
                f"server process CPU (user+system, models excluded): {cpu_per_run * 1000:.1f} ms per run.",
            ],
        )
    ]
