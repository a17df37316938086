"""Figures 2 and 3: how soon a submitted run starts on an idle server, and how fast an identical
request is answered from the cache, each beside the round trip of GET /api/v1/healthz."""

from __future__ import annotations

import time

from client import Api, instant, timed
from harness import Bench
from report import Figure, median, ms, percentile

SEQUENTIAL_RUNS = 30
START_TARGET = 0.020
CACHE_REQUESTS = 200
CACHE_TARGET = 3.0
AUTH_TARGET = 1.5
WARMUP = 5
BLOCK = 20


def measure_submit_to_start(bench: Bench) -> list[Figure]:
    with bench.server("submit-to-start") as (server, _):
        api = Api(server.url, server.token)
        _warm_up(api)
        health = [timed(api.healthz) for _ in range(CACHE_REQUESTS)]
        delays, claims, launches, round_trips = [], [], [], []
        for k in range(SEQUENTIAL_RUNS):
            begun = time.perf_counter()
            run = api.submit({"i": k})
            round_trips.append(time.perf_counter() - begun)
            # First look after 100 ms, so polling does not compete with the start being measured.
            final = api.wait_final(run["id"], first_poll=0.1, poll=0.02)
            if final["status"] != "succeeded":
                raise RuntimeError(f"submit-to-start: run {run['id']} ended {final['status']}: {final['error']}")
            created, started = instant(final["created_at"]), instant(final["started_at"])
            claimed = instant(final["attempts"][0]["created_at"])
            delays.append((started - created).total_seconds())
            claims.append((claimed - created).total_seconds())
            launches.append((started - claimed).total_seconds())
            time.sleep(0.05)  # let the finished attempt's bookkeeping settle: the next submit meets an idle server
        api.close()
    value = median(delays)
    return [
        Figure(
            name=f"submit-to-start, idle server (median of {SEQUENTIAL_RUNS})",
            measured=f"{ms(value)} (p90 {ms(percentile(delays, 0.9))})",
            baseline=f"{ms(median(health))} GET /healthz",
            compared=ms(value),
            target=f"≤ {ms(START_TARGET)}",
            met=value <= START_TARGET,
            notes=[
                "started_at - created_at of each run, from GET /runs/{id}; each run waited to completion "
                "before the next is submitted.",
                f"split: created → attempt claimed (attempt created_at) median {ms(median(claims))}; "
                f"claimed → process started median {ms(median(launches))}.",
                f"POST /models/noop/runs round trip median {ms(median(round_trips))}; "
                f"max submit-to-start {ms(max(delays))}.",
            ],
        )
    ]


def measure_cache_hit(bench: Bench) -> list[Figure]:
    with bench.server("cache-hit") as (server, _):
        api = Api(server.url, server.token)
        _warm_up(api)  # runs i=-1
        source = api.submit({"i": 0})
        final = api.wait_final(source["id"], first_poll=0.05, poll=0.02)
        if final["status"] != "succeeded":
            raise RuntimeError(f"cache-hit: the source run ended {final['status']}: {final['error']}")
        for _ in range(WARMUP):
            api.healthz()
            api.submit({"i": 0}, expect=200)
        # Alternating blocks: a burst of other work on the machine hits both series alike, while
        # each health check still follows health checks (one right after a write runs slower).
        health: list[float] = []
        hits: list[float] = []
        for _ in range(CACHE_REQUESTS // BLOCK):
            health += [timed(api.healthz) for _ in range(BLOCK)]
            hits += [timed(api.submit, {"i": 0}, 200) for _ in range(BLOCK)]
        api.close()
    ratio = median(hits) / median(health)
    return [
        Figure(
            name=f"cache hit: identical POST (median of {CACHE_REQUESTS})",
            measured=f"{ms(median(hits))} (p90 {ms(percentile(hits, 0.9))})",
            baseline=f"{ms(median(health))} GET /healthz",
            compared=f"ratio {ratio:.2f}",
            target=f"ratio ≤ {CACHE_TARGET:g}",
            met=ratio <= CACHE_TARGET,
            notes=[
                f"every POST answered 200 (cache_hit); one keep-alive connection; {WARMUP} warm-up requests "
                f"of each first, then alternating blocks of {BLOCK} GET /healthz and {BLOCK} POSTs.",
            ],
        )
    ]


def measure_auth(bench: Bench) -> list[Figure]:
    """What checking a bearer token costs: GET /runs/{id} signed in, against the same GET by an
    anonymous caller whom the workspace lets view the model (no token to look up)."""
    with bench.server("auth") as (server, _):
        signed_in = Api(server.url, server.token)
        anonymous = Api(server.url, None)
        _warm_up(signed_in)
        run_id = signed_in.submit({"i": 0})["id"]
        signed_in.wait_final(run_id, first_poll=0.05, poll=0.02)
        for _ in range(WARMUP):
            signed_in.run(run_id)
            anonymous.run(run_id)
        with_token: list[float] = []
        without: list[float] = []
        for _ in range(CACHE_REQUESTS // BLOCK):
            with_token += [timed(signed_in.run, run_id) for _ in range(BLOCK)]
            without += [timed(anonymous.run, run_id) for _ in range(BLOCK)]
        signed_in.close()
        anonymous.close()
    ratio = median(with_token) / median(without)
    return [
        Figure(
            name=f"auth: GET /runs/{{id}} with a token (median of {CACHE_REQUESTS})",
            measured=f"{ms(median(with_token))} (p90 {ms(percentile(with_token, 0.9))})",
            baseline=f"{ms(median(without))} the same GET, anonymous",
            compared=f"ratio {ratio:.2f}",
            target=f"ratio ≤ {AUTH_TARGET:g}",
            met=ratio <= AUTH_TARGET,
            notes=[
                "the token is looked up by id and its sha256 compared in constant time, then the user's groups "
                "are read: one read transaction per request; the anonymous caller has a view grant on noop.",
                f"alternating blocks of {BLOCK} of each on two keep-alive connections, after {WARMUP} warm-ups.",
            ],
        )
    ]


def _warm_up(api: Api) -> None:
    """One run (i=-1) so the model version is recorded and imports and caches are warm."""
    api.wait_final(api.submit({"i": -1})["id"], first_poll=0.05, poll=0.02)
    for _ in range(WARMUP):
        api.healthz()
