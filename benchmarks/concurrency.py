"""Figure: many clients submitting new runs at once, for a while: how long a submit takes when
the server is busy, how many it answers per second, and whether any fails."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from client import MODEL, Api
from harness import Bench
from report import Figure, median, ms, percentile

TARGET_P99 = 0.250
TIMEOUT = 30.0  # a submit slower than this is counted as an error


@dataclass
class Client:
    """What one client saw: the latency of each answered submit, and what went wrong."""

    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    last_answer: float = 0.0  # perf_counter


def measure(bench: Bench) -> list[Figure]:
    clients, seconds = bench.concurrency_clients, bench.concurrency_seconds
    with bench.server("concurrency") as (server, _):
        warm = Api(server.url, server.token)
        warm.wait_final(warm.submit({"i": -1})["id"], first_poll=0.05, poll=0.02)  # the model version recorded
        warm.close()
        seen = [Client() for _ in range(clients)]
        began: list[float] = []
        # Every client connected first; the last to arrive notes the start, and all begin together.
        start = threading.Barrier(clients, action=lambda: began.append(time.perf_counter()), timeout=120)
        threads = [
            threading.Thread(target=_submit_loop, args=(server.url, server.token, k, seen[k], start, began, seconds))
            for k in range(clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if start.broken or not began:
            raise RuntimeError("concurrency: a client could not connect (see the traceback above)")
        queued = _unfinished(server.url, server.token)
    latencies = [latency for client in seen for latency in client.latencies]
    errors: dict[str, int] = {}
    for client in seen:
        for kind, count in client.errors.items():
            errors[kind] = errors.get(kind, 0) + count
    failed = sum(errors.values())
    elapsed = max(client.last_answer for client in seen) - began[0]
    answered = len(latencies) + failed
    p99 = percentile(latencies, 0.99) if latencies else float("inf")
    return [
        Figure(
            name=f"concurrency: {clients} clients submitting for {seconds:g} s",
            measured=f"p99 {ms(p99)}, p50 {ms(median(latencies)) if latencies else '-'}; "
            f"{answered / elapsed:.0f} requests/s; {failed} errors",
            baseline="-",
            compared=f"p99 {ms(p99)}, {failed} errors",
            target=f"p99 ≤ {ms(TARGET_P99)}, no errors",
            met=p99 <= TARGET_P99 and failed == 0,
            notes=[
                f"{clients} threads, each with its own keep-alive connection, POST /models/{MODEL}/runs with new "
                f"params (no cache hits) one after the other for {seconds:g} s; a submit is timed from the request "
                f"to its answer, {TIMEOUT:g} s at most (an error beyond).",
                f"{len(latencies)} runs created (201) in {elapsed:.1f} s; "
                f"p90 {ms(percentile(latencies, 0.9)) if latencies else '-'}, "
                f"max {ms(max(latencies)) if latencies else '-'}.",
                "errors: " + (", ".join(f"{count} {kind}" for kind, count in sorted(errors.items())) or "none") + ".",
                f"the runs execute meanwhile on {bench.slots} local slots; {queued} were still unfinished when the "
                "clients stopped.",
            ],
        )
    ]


def _submit_loop(
    url: str, token: str, number: int, seen: Client, start: threading.Barrier, began: list[float], seconds: float
) -> None:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT) as http:
        try:
            http.get("/api/v1/healthz").raise_for_status()  # connected before the start
        except BaseException:
            start.abort()
            raise
        start.wait()
        deadline = began[0] + seconds
        sent = 0
        while time.perf_counter() < deadline:
            params = {"i": number * 10_000_000 + sent}  # distinct across clients and submits
            sent += 1
            begun = time.perf_counter()
            try:
                response = http.post(f"/api/v1/models/{MODEL}/runs", json={"params": params})
            except httpx.HTTPError as exc:
                kind = type(exc).__name__
            else:
                kind = "" if response.status_code == 201 else f"HTTP {response.status_code}"
            answered = time.perf_counter()
            seen.last_answer = answered
            if kind:
                seen.errors[kind] = seen.errors.get(kind, 0) + 1
            else:
                seen.latencies.append(answered - begun)


def _unfinished(url: str, token: str) -> int:
    """How many runs are queued, starting or running (at most 10,000 counted)."""
    api = Api(url, token)
    try:
        count = 0
        cursor = None
        while count < 10_000:
            more: dict[str, Any] = {"cursor": cursor} if cursor else {}
            page = api.runs(status=["queued", "starting", "running"], limit=500, **more)
            count += len(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        return count
    finally:
        api.close()
