"""Figure 1: how long 300 no-op runs take through the platform, against spawning the same
command 300 times from plain Python and through Celery + Redis with the same concurrency, in
interleaved rounds of the same run; and the CPU the server spends per run."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import celery_baseline
from client import Api, instant, status_counts, submit_all
from cpu import Spent, tree_cpu
from harness import Bench
from report import Figure, ms, secs

CLIENT_THREADS = 4  # submit the platform's runs and the Celery jobs alike
TARGETS = {"sqlite": 1.3, "postgresql": 1.5}  # platform / plain subprocess
CPU_TARGET = 0.003  # server CPU seconds per run, a target on SQLite only
ROUNDS = 3  # subprocess, Celery and platform alternate; medians are compared (1 round with --quick)


@dataclass(frozen=True)
class Round:
    baseline: float
    celery: float | None
    celery_cpu: Spent | None  # the Celery worker's processes, Redis not included
    platform: float
    submitted: float  # seconds until every POST was answered
    server_cpu: Spent  # the server process and its long-lived helpers, not the models


def spawn_baseline(runs: int, workers: int) -> float:
    """Seconds to run ``python -c pass`` ``runs`` times, ``workers`` at a time."""

    def spawn(_: int) -> None:
        subprocess.run([sys.executable, "-c", "pass"], check=True)

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(spawn, range(runs)))
    return time.perf_counter() - start


def through_platform(bench: Bench, label: str, runs: int) -> tuple[float, float, Spent]:
    """Seconds from the first submit until the last of ``runs`` runs is final, seconds until every
    submit was answered, and the CPU the server's processes spent meanwhile."""
    with bench.server(label) as (server, _):
        api = Api(server.url, server.token)
        # One run first, so the model version is recorded and caches are warm before timing.
        api.wait_final(api.submit({"i": -1})["id"], first_poll=0.05, poll=0.02)
        cpu_before = tree_cpu(server.pid)
        start = time.time()
        ids = set(submit_all(server.url, server.token, [{"i": i} for i in range(runs)], CLIENT_THREADS))
        submitted = time.time() - start
        # A slow poll keeps the client's load off the server; the end is read from the runs.
        api.wait_idle(poll=0.25, timeout=600)
        cpu = tree_cpu(server.pid).spent_since(cpu_before)
        found = api.runs_among(ids)
        api.close()
    counts = status_counts(found)
    if counts != {"succeeded": runs}:
        raise RuntimeError(f"throughput: expected {runs} succeeded runs, got {counts}")
    # finished_at is written by the server on this machine's clock, the one time.time() reads.
    end = max(instant(r["finished_at"]) for r in found).timestamp()
    return end - start, submitted, cpu


def measure(bench: Bench) -> list[Figure]:
    runs = bench.throughput_runs
    skipped = celery_baseline.unavailable(bench.redis_url)
    rounds = []
    for number in range(1 if bench.quick else ROUNDS):
        baseline = spawn_baseline(runs, bench.slots)
        celery, celery_cpu = None, None
        if skipped is None:
            with celery_baseline.worker(bench, f"celery-{number}") as worker:
                celery, celery_cpu = worker.run(runs, CLIENT_THREADS)
        platform, submitted, server_cpu = through_platform(bench, f"throughput-{number}", runs)
        rounds.append(Round(baseline, celery, celery_cpu, platform, submitted, server_cpu))
    return _figures(bench, runs, rounds, skipped)


def _figures(bench: Bench, runs: int, rounds: Sequence[Round], skipped: str | None) -> list[Figure]:
    kind = bench.stores.kind
    target = TARGETS[kind]
    baseline = _median(rounds, lambda r: r.baseline)
    platform = _median(rounds, lambda r: r.platform)
    ratio = platform / baseline
    measured = f"{secs(platform)} ({runs / platform:.0f} runs/s)"
    per_round = "; ".join(
        f"{r.platform:.2f} s / {r.baseline:.2f} s" + (f" / {r.celery:.2f} s" if r.celery is not None else "")
        for r in rounds
    )
    setup = (
        f"{bench.slots} local slots (os.cpu_count()); plain subprocess: a ThreadPoolExecutor of {bench.slots} "
        f"workers; Celery: a worker with {bench.slots} prefork processes, broker and results in Redis "
        f"({bench.redis_url}), each task a subprocess.run of the same command; {CLIENT_THREADS} client threads "
        "submit all runs (POSTs) or jobs (delay()) up front."
    )
    figures = [
        Figure(
            name=f"throughput: {runs} no-op runs",
            measured=measured,
            baseline=f"{secs(baseline)} plain subprocess.run",
            compared=f"ratio {ratio:.2f}",
            target=f"ratio ≤ {target} on {kind}",
            met=ratio <= target,
            notes=[
                setup,
                f"median of {len(rounds)} rounds, each plain subprocess, then "
                + ("Celery, then " if skipped is None else "")
                + "a fresh server; platform / subprocess"
                + (" / Celery" if skipped is None else "")
                + f": {per_round}.",
                "platform time: first submit until the last run's finished_at; every POST was answered after "
                + ", ".join(secs(r.submitted) for r in rounds)
                + ". Celery time: first delay() until the last result is in (AsyncResult.get).",
            ],
        )
    ]
    celery = _median(rounds, lambda r: r.celery or 0.0) if skipped is None else None
    celery_notes = []
    if celery is not None:
        rate, relative = runs / celery, celery / baseline
        celery_notes.append(f"Celery + Redis: {rate:.0f} jobs/s, {relative:.2f} of plain subprocess's time.")
    figures.append(
        Figure(
            name=f"throughput: {runs} no-op runs, against Celery + Redis",
            measured=measured,
            baseline=f"Celery + Redis {skipped}" if celery is None else f"{secs(celery)} Celery + Redis",
            compared="-" if celery is None else f"ratio {platform / celery:.2f}",
            target="(information)",
            met=None,
            notes=celery_notes,
        )
    )
    figures.append(_cpu_figure(kind, runs, rounds, skipped))
    return figures


def _cpu_figure(kind: str, runs: int, rounds: Sequence[Round], skipped: str | None) -> Figure:
    server = _median(rounds, lambda r: r.server_cpu.total) / runs
    alone = _median(rounds, lambda r: r.server_cpu.root) / runs
    helpers = _median(rounds, lambda r: r.server_cpu.helpers) / runs
    notes = [
        f"user + system CPU of the server process ({ms(alone)} per run) and of its long-lived helper processes "
        f"(the supervisor service, {ms(helpers)} per run), from the first submit until all runs ended; the models "
        "and the per-attempt supervisors are not in it (the service lets the kernel reap them, which discards "
        "their times).",
    ]
    baseline = "-"
    if skipped is None:
        worker = _median(rounds, lambda r: r.celery_cpu.total if r.celery_cpu else 0.0) / runs
        baseline = f"{ms(worker)} Celery worker per job"
        notes.append(
            f"Celery: the worker's main and pool processes, {ms(worker)} per job (the commands, and Redis's own "
            "CPU, not in it)."
        )
    on_sqlite = kind == "sqlite"
    return Figure(
        name="throughput: server CPU per run",
        measured=ms(server),
        baseline=baseline,
        compared=ms(server),
        target=f"≤ {ms(CPU_TARGET)} on SQLite" if on_sqlite else f"(information; ≤ {ms(CPU_TARGET)} on SQLite)",
        met=server <= CPU_TARGET if on_sqlite else None,
        notes=notes,
    )


def _median(rounds: Sequence[Round], value: Callable[[Round], float]) -> float:
    return statistics.median(value(r) for r in rounds)
