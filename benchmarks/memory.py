"""Figure 5: does the server's memory stay flat as runs accumulate?"""

from __future__ import annotations

import time

from client import Api, status_counts, submit_all
from harness import Bench
from report import Figure, mb

CLIENT_THREADS = 4
TARGET = 30e6


def measure(bench: Bench) -> list[Figure]:
    first, total = (200, 2000) if bench.quick else (1000, 10000)
    chunk = first  # submitted in chunks, so the RSS is seen after every `first` runs
    series: list[tuple[int, int]] = []
    with bench.server("memory") as (server, _):
        api = Api(server.url, server.token)
        idle = server.rss()
        began = time.perf_counter()
        for done in range(chunk, total + 1, chunk):
            submit_all(server.url, server.token, [{"i": i} for i in range(done - chunk, done)], CLIENT_THREADS)
            api.wait_idle(poll=0.25, timeout=3600)
            time.sleep(1)  # let the last attempts' threads end
            series.append((done, server.rss()))
        elapsed = time.perf_counter() - began
        counts = status_counts(api.all_runs())
        api.close()
    if counts != {"succeeded": total}:
        raise RuntimeError(f"memory: expected {total} succeeded runs, got {counts}")
    at_first, at_total = series[0][1], series[-1][1]
    growth = at_total - at_first
    return [
        Figure(
            name=f"memory: server RSS after {total:,} runs",
            measured=f"{mb(at_total)} (+{mb(growth)})",
            baseline=f"{mb(at_first)} after {first:,} runs",
            compared=f"+{mb(growth)}",
            target=f"growth ≤ {mb(TARGET)}",
            met=growth <= TARGET,
            notes=[
                f"RSS of the server process (psutil), not of the models it runs; {mb(idle)} just after start.",
                "after every " + f"{chunk:,} runs: " + ", ".join(mb(rss) for _, rss in series) + ".",
                f"{total:,} runs took {elapsed:.0f} s ({total / elapsed:.0f} runs/s), submitted in chunks of "
                f"{chunk:,} by {CLIENT_THREADS} client threads.",
            ],
        )
    ]
