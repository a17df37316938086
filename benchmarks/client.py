"""The HTTP calls the figures make, timed where it matters."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

MODEL = "noop"
ACTIVE = ("queued", "starting", "running", "preempted", "lost")
FINAL = frozenset({"succeeded", "failed", "timed_out", "cancelled"})


class Api:
    """One keep-alive HTTP connection to the server (``httpx.Client`` is not shared across threads)."""

    def __init__(self, url: str, token: str | None) -> None:
        """``token`` None: an anonymous caller."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=300)

    def close(self) -> None:
        self.http.close()

    def submit(self, params: dict[str, Any], expect: int = 201) -> dict[str, Any]:
        response = self.http.post(f"/api/v1/models/{MODEL}/runs", json={"params": params})
        if response.status_code != expect:
            raise RuntimeError(f"submit {params} answered {response.status_code}, expected {expect}: {response.text}")
        body: dict[str, Any] = response.json()
        return body

    def run(self, run_id: int) -> dict[str, Any]:
        response = self.http.get(f"/api/v1/runs/{run_id}")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def runs(self, **query: Any) -> dict[str, Any]:
        response = self.http.get("/api/v1/runs", params=query)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def healthz(self) -> None:
        self.http.get("/api/v1/healthz").raise_for_status()

    def any_active(self) -> bool:
        return bool(self.runs(status=list(ACTIVE), limit=1)["items"])

    def wait_idle(self, poll: float, timeout: float) -> float:
        """Poll until no run is unfinished; returns the ``perf_counter`` time it was first seen so."""
        deadline = time.perf_counter() + timeout
        while True:
            if not self.any_active():
                return time.perf_counter()
            if time.perf_counter() > deadline:
                raise RuntimeError(f"runs still unfinished after {timeout:.0f} s")
            time.sleep(poll)

    def wait_final(self, run_id: int, first_poll: float, poll: float, timeout: float = 60) -> dict[str, Any]:
        time.sleep(first_poll)
        deadline = time.perf_counter() + timeout
        while True:
            run = self.run(run_id)
            if run["status"] in FINAL:
                return run
            if time.perf_counter() > deadline:
                raise RuntimeError(f"run {run_id} still {run['status']} after {timeout:.0f} s")
            time.sleep(poll)

    def all_runs(self, **query: Any) -> list[dict[str, Any]]:
        """Every run matching ``query``, following the pages."""
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = self.runs(**query, limit=500, **({"cursor": cursor} if cursor else {}))
            items += page["items"]
            cursor = page["next_cursor"]
            if cursor is None:
                return items

    def runs_among(self, ids: set[int]) -> list[dict[str, Any]]:
        """The runs of ``ids``, read newest first until all were seen: ids from the latest
        submissions cost a page or two however many older runs the store holds."""
        found: list[dict[str, Any]] = []
        cursor = None
        while len(found) < len(ids):
            page = self.runs(limit=500, **({"cursor": cursor} if cursor else {}))
            found += [run for run in page["items"] if run["id"] in ids]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        return found


def timed(call: Any, *args: Any) -> float:
    """Seconds one call takes."""
    start = time.perf_counter()
    call(*args)
    return time.perf_counter() - start


def submit_all(url: str, token: str, params: Sequence[dict[str, Any]], threads: int) -> list[int]:
    """Submit every parameter set, ``threads`` requests at a time; run ids in submission order."""
    local = threading.local()
    clients: list[Api] = []
    lock = threading.Lock()

    def submit(one: dict[str, Any]) -> int:
        if not hasattr(local, "api"):
            local.api = Api(url, token)
            with lock:
                clients.append(local.api)
        return int(local.api.submit(one)["id"])

    try:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(submit, params))
    finally:
        for api in clients:
            api.close()


def instant(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def status_counts(runs: Sequence[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for run in runs:
        counts[run["status"]] = counts.get(run["status"], 0) + 1
    return counts
