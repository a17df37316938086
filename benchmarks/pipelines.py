"""Figure 8: a pipeline of 1,000 fan-out children (the ``fanout`` model: 1,000 no-op ``split``
children, then one ``gather`` step that needs them all), against one server.

- create: the POST that creates the pipeline run and its 1,000 children, beside the POST of one run;
- advance: from that POST to the pipeline's ``finished_at``, beside 1,000 plain no-op runs
  submitted at once to the same server (the same executions without a pipeline around them);
- other users: while the pipeline advances, another client alternates a cache-hit submit and a
  GET of a run; the baseline is the same client while the 1,000 plain runs execute (the machine
  equally busy running models, without a pipeline to advance). The idle figure is shown too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from client import Api, instant, submit_all, timed
from harness import Bench
from report import Figure, median, ms, percentile, secs

FANOUT = 1_000
FANOUT_QUICK = 300
SINGLE_POSTS = 20
IDLE_SAMPLES = 200
ADVANCE_TARGET = 1.5  # the pipeline's bookkeeping may cost at most half again the executions' time
OTHER_USERS_TARGET = 1.5  # other users' median latency while it advances, against plain runs executing


def measure(bench: Bench) -> list[Figure]:
    fanout = FANOUT_QUICK if bench.quick else FANOUT
    with bench.server("pipeline") as (server, _):
        api = Api(server.url, server.token)
        warm = api.submit({"i": -1})
        api.wait_final(warm["id"], first_poll=0.05, poll=0.02)
        idle = _other_user_latencies(api, warm["id"], count=IDLE_SAMPLES)
        singles = [timed(api.submit, {"i": -100 - k}) for k in range(SINGLE_POSTS)]
        api.wait_idle(poll=0.25, timeout=120)

        # Baseline: the same number of executions as plain runs, submitted all at once.
        busy: list[float] = []
        with _sampling(server.url, server.token, warm["id"], busy):
            began = time.perf_counter()
            ids = submit_all(server.url, server.token, [{"i": k} for k in range(fanout)], threads=4)
            api.wait_idle(poll=0.25, timeout=600)
        plain_runs = [api.run(run_id) for run_id in (ids[0], ids[-1])]
        plain = max(instant(r["finished_at"]) for r in plain_runs) - instant(plain_runs[0]["created_at"])
        plain_wall = time.perf_counter() - began

        pipeline_api = Api(server.url, server.token)
        during: list[float] = []
        with _sampling(server.url, server.token, warm["id"], during):
            began = time.perf_counter()
            response = pipeline_api.http.post(
                "/api/v1/models/fanout/runs", json={"params": {"items": list(range(fanout))}}
            )
            created = time.perf_counter() - began
            if response.status_code != 201:
                raise RuntimeError(f"pipeline submit answered {response.status_code}: {response.text}")
            pipeline = response.json()
            final = pipeline_api.wait_final(pipeline["id"], first_poll=1.0, poll=0.5, timeout=900)
        if final["status"] != "succeeded":
            raise RuntimeError(f"pipeline ended {final['status']}: {final['error']}")
        advanced = instant(final["finished_at"]) - instant(final["created_at"])
        children = sum(step["items"] for step in final["steps"])
        pipeline_api.close()
        api.close()

    advance_ratio = advanced.total_seconds() / plain.total_seconds()
    other_ratio = median(during) / median(busy)
    return [
        Figure(
            name=f"pipeline of {fanout}: create",
            measured=ms(created),
            baseline=f"{ms(median(singles))} POST of one run",
            compared=f"{created / median(singles):.0f}x",
            target="(information)",
            met=None,
            notes=[f"One POST creates the pipeline run and its {fanout} `split` children in one transaction."],
        ),
        Figure(
            name=f"pipeline of {fanout}: advance",
            measured=secs(advanced.total_seconds()),
            baseline=f"{secs(plain.total_seconds())} {fanout} plain runs",
            compared=f"{advance_ratio:.2f}x",
            target=f"≤ {ADVANCE_TARGET}x",
            met=advance_ratio <= ADVANCE_TARGET,
            notes=[
                f"created_at → finished_at of the pipeline run ({children} step runs), against the first "
                f"plain run's created_at → the last one's finished_at (client wall time {secs(plain_wall)}).",
            ],
        ),
        Figure(
            name=f"other users during a pipeline of {fanout}",
            measured=f"{ms(median(during))} (p95 {ms(percentile(during, 0.95))}, {len(during)} requests)",
            baseline=f"{ms(median(busy))} (p95 {ms(percentile(busy, 0.95))}) during {fanout} plain runs",
            compared=f"{other_ratio:.2f}x",
            target=f"≤ {OTHER_USERS_TARGET}x (median)",
            met=other_ratio <= OTHER_USERS_TARGET,
            notes=[
                "Requests of another client, one at a time: a cache-hit submit of `noop` and GET /runs/{id}, "
                "alternately, while the pipeline advances; the baseline is the same client while the plain "
                f"runs execute. On the idle server: median {ms(median(idle))}, p95 {ms(percentile(idle, 0.95))}.",
            ],
        ),
    ]


def _other_user_latencies(api: Api, run_id: int, count: int) -> list[float]:
    samples: list[float] = []
    for k in range(count):
        samples.append(timed(api.submit, {"i": -1}, 200) if k % 2 else timed(api.run, run_id))
    return samples


@contextmanager
def _sampling(url: str, token: str, run_id: int, into: list[float]) -> Iterator[None]:
    """Another user's requests, timed into ``into``, for as long as the block runs."""
    stop = threading.Event()
    watcher = threading.Thread(target=_sample_until, args=(url, token, run_id, stop, into))
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()


def _sample_until(url: str, token: str, run_id: int, stop: threading.Event, into: list[Any]) -> None:
    api = Api(url, token)
    try:
        k = 0
        while not stop.is_set():
            into.append(timed(api.submit, {"i": -1}, 200) if k % 2 else timed(api.run, run_id))
            k += 1
            time.sleep(0.01)  # a user clicking, not a load generator
    finally:
        api.close()
