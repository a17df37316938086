"""Figure: does the platform's cost per run grow with the number of runs in the store? The same
no-op runs through a server whose store already holds 1,000 runs and one whose store holds
100,000, in interleaved rounds."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import statistics
import time
from contextlib import ExitStack
from typing import Any

from client import Api, instant, status_counts, submit_all
from cpu import Spent, tree_cpu
from harness import Bench
from report import Figure, ms
from sqlalchemy import Connection, Table, create_engine, func, insert, select, text, update

from modelrunner.engine.cache_key import cache_key
from modelrunner.store.tables import Base

SIZES = (1_000, 100_000)
QUICK_SIZES = (1_000, 10_000)
RUNS = 200  # measured per round
ROUNDS = 3  # per size, the sizes alternating
CLIENT_THREADS = 4
TARGET = 1.1  # large / small
BATCH = 5_000  # rows per executemany
SPACING = dt.timedelta(seconds=30)  # between the created_at of two stored runs
CLONE_PARAM = 1_000_000_000  # the stored runs' i start here, far from the measured runs'

RUNS_TABLE: Table = Base.metadata.tables["runs"]
ATTEMPTS_TABLE: Table = Base.metadata.tables["attempts"]
EVENTS_TABLE: Table = Base.metadata.tables["events"]
CURSORS_TABLE: Table = Base.metadata.tables["trigger_cursors"]


def measure(bench: Bench) -> list[Figure]:
    small, large = QUICK_SIZES if bench.quick else SIZES
    samples: dict[int, list[tuple[float, Spent]]] = {small: [], large: []}
    filled: dict[int, float] = {}
    with ExitStack() as stack:
        databases = {size: stack.enter_context(bench.stores.fresh(_label(size))) for size in (small, large)}
        for size, url in databases.items():
            began = time.perf_counter()
            _fill(bench, size, url)
            filled[size] = time.perf_counter() - began
        first = 0
        for number in range(ROUNDS):
            # Alternate which size goes first, so a drift in the machine's load favours neither.
            for size in (small, large) if number % 2 == 0 else (large, small):
                samples[size].append(_round(bench, size, databases[size], first))
                first += RUNS + 1
    return _figures(bench, small, large, samples, filled)


def _label(size: int) -> str:
    return f"scale-{size}"


def _round(bench: Bench, size: int, database_url: str, first: int) -> tuple[float, Spent]:
    """Seconds from the first of RUNS submits until the last run is final, and the CPU the server's
    processes spent meanwhile. ``first`` is the warm-up run's i; the measured runs follow it."""
    with bench.server_on(_label(size), database_url) as server:
        api = Api(server.url, server.token)
        api.wait_final(api.submit({"i": first})["id"], first_poll=0.05, poll=0.02)
        before = tree_cpu(server.pid)
        start = time.time()
        params = [{"i": i} for i in range(first + 1, first + 1 + RUNS)]
        ids = set(submit_all(server.url, server.token, params, CLIENT_THREADS))
        api.wait_idle(poll=0.25, timeout=600)
        cpu = tree_cpu(server.pid).spent_since(before)
        found = api.runs_among(ids)
        api.close()
    counts = status_counts(found)
    if counts != {"succeeded": RUNS}:
        raise RuntimeError(f"scale: expected {RUNS} succeeded runs, got {counts}")
    return max(instant(r["finished_at"]) for r in found).timestamp() - start, cpu


def _figures(
    bench: Bench, small: int, large: int, samples: dict[int, list[tuple[float, Spent]]], filled: dict[int, float]
) -> list[Figure]:
    wall = {size: statistics.median(took for took, _ in samples[size]) / RUNS for size in samples}
    cpu = {size: statistics.median(spent.total for _, spent in samples[size]) / RUNS for size in samples}
    rounds = "; ".join(
        f"{size:,}: " + ", ".join(f"{took / RUNS * 1000:.1f}/{spent.total / RUNS * 1000:.2f}" for took, spent in runs)
        for size, runs in samples.items()
    )
    common = [
        f"a store with {small:,} and one with {large:,} runs of the noop model: one real run recorded the model "
        "version, the others were inserted with SQL as copies of it (a succeeded run, its attempt and its events, "
        f"created {SPACING.seconds} s apart before it, each with its own params and cache key); the notifier's "
        "and the other event cursors were moved past the copied events, as a server that had seen them would have. "
        + ", ".join(f"{size:,} filled in {seconds:.0f} s" for size, seconds in filled.items())
        + (" (then ANALYZE)" if bench.stores.kind == "postgresql" else "")
        + ".",
        f"{ROUNDS} rounds per store, the stores alternating, each on a freshly started server after one warm-up "
        f"run: {RUNS} new no-op runs submitted by {CLIENT_THREADS} client threads, from the first submit until "
        "the last run's finished_at; medians compared.",
        f"each round, ms per run, wall/server CPU: {rounds}.",
    ]
    figures: list[Figure] = []
    for name, values, unit in (
        ("server CPU per run", cpu, "server process and its helpers, user + system"),
        ("time per run", wall, f"{bench.slots} local slots"),
    ):
        ratio = values[large] / values[small]
        figures.append(
            Figure(
                name=f"scale: {name}, {large:,} runs in the store",
                measured=ms(values[large]),
                baseline=f"{ms(values[small])} with {small:,} runs",
                compared=f"ratio {ratio:.2f}",
                target=f"ratio ≤ {TARGET}",
                met=ratio <= TARGET,
                notes=[f"{name}: {unit}.", *common] if not figures else [f"{name}: {unit}."],
            )
        )
    return figures


# --- filling a store -----------------------------------------------------------------------------


def _fill(bench: Bench, size: int, database_url: str) -> None:
    """A store holding ``size`` runs: one real run, then ``size - 1`` copies of it inserted with
    the server stopped."""
    with bench.server_on(_label(size), database_url) as server:
        api = Api(server.url, server.token)
        run = api.wait_final(api.submit({"i": -1})["id"], first_poll=0.05, poll=0.02)
        api.close()
    if run["status"] != "succeeded":
        raise RuntimeError(f"scale: the first run ended {run['status']}: {run['error']}")
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "sqlite":
                connection.exec_driver_sql("PRAGMA synchronous=OFF")  # this loading connection only
            _copy_run(connection, int(run["id"]), size - 1)
            newest_event = connection.scalar(select(func.max(EVENTS_TABLE.c.id)))
            connection.execute(update(CURSORS_TABLE).values(last_event_id=newest_event))
            if engine.dialect.name == "postgresql":
                for table in (RUNS_TABLE, ATTEMPTS_TABLE, EVENTS_TABLE):  # ids were given, not drawn
                    sequence = f"pg_get_serial_sequence('{table.name}', 'id')"
                    connection.execute(text(f"SELECT setval({sequence}, (SELECT max(id) FROM {table.name}))"))
            connection.commit()
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text("ANALYZE"))
    finally:
        engine.dispose()


def _copy_run(connection: Connection, run_id: int, copies: int) -> None:
    """Insert ``copies`` copies of run ``run_id`` with its attempts and events, older than it."""
    run = connection.execute(select(RUNS_TABLE).where(RUNS_TABLE.c.id == run_id)).mappings().one()
    attempts = connection.execute(select(ATTEMPTS_TABLE).where(ATTEMPTS_TABLE.c.run_id == run_id)).mappings().all()
    events = connection.execute(select(EVENTS_TABLE).where(EVENTS_TABLE.c.run_id == run_id)).mappings().all()
    if cache_key(run["model_name"], run["model_version"], run["params"]) != run["cache_key"]:
        raise RuntimeError("scale: engine.cache_key no longer gives the stored key of a plain run; update scale.py")
    next_ids = {table: _next_id(connection, table) for table in (RUNS_TABLE, ATTEMPTS_TABLE, EVENTS_TABLE)}
    rows: dict[Table, list[dict[str, Any]]] = {RUNS_TABLE: [], ATTEMPTS_TABLE: [], EVENTS_TABLE: []}
    for n in range(copies):
        new_run = next_ids[RUNS_TABLE] + n
        shift = -SPACING * (copies - n)
        params = {**run["params"], "i": CLONE_PARAM + n}
        key = cache_key(run["model_name"], run["model_version"], params)
        rows[RUNS_TABLE].append({**_shifted(run, shift), "id": new_run, "params": params, "cache_key": key})
        for k, attempt in enumerate(attempts):
            new_id = next_ids[ATTEMPTS_TABLE] + n * len(attempts) + k
            rows[ATTEMPTS_TABLE].append(_copied_attempt(attempt, shift, new_id, new_run))
        for k, event in enumerate(events):
            new_id = next_ids[EVENTS_TABLE] + n * len(events) + k
            rows[EVENTS_TABLE].append(_copied_event(event, shift, new_id, new_run, params))
        if len(rows[RUNS_TABLE]) >= BATCH or n == copies - 1:
            for table, batch in rows.items():  # runs first: attempts and events refer to them
                if batch:
                    connection.execute(insert(table), batch)
                batch.clear()


def _next_id(connection: Connection, table: Table) -> int:
    return int(connection.scalar(select(func.coalesce(func.max(table.c.id), 0))) or 0) + 1


def _copied_attempt(attempt: Any, shift: dt.timedelta, new_id: int, run_id: int) -> dict[str, Any]:
    handle = copy.deepcopy(attempt["handle"])
    if isinstance(handle, dict):  # the local backend's names the attempt and the run
        handle.update({k: v for k, v in (("attempt_id", new_id), ("run_id", run_id)) if k in handle})
    token = attempt["callback_token_hash"] and hashlib.sha256(f"attempt {new_id}".encode()).hexdigest()
    return {**_shifted(attempt, shift), "id": new_id, "run_id": run_id, "handle": handle, "callback_token_hash": token}


def _copied_event(event: Any, shift: dt.timedelta, new_id: int, run_id: int, params: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(event["data"])
    if isinstance(data, dict):  # run.succeeded names its run and params
        data.update({k: v for k, v in (("run_id", run_id), ("params", params)) if k in data})
    return {**_shifted(event, shift), "id": new_id, "run_id": run_id, "data": data}


def _shifted(row: Any, shift: dt.timedelta) -> dict[str, Any]:
    """The row as a dict, every timestamp moved by ``shift``."""
    return {key: value + shift if isinstance(value, dt.datetime) else value for key, value in dict(row).items()}
