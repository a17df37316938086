"""Figure 4: the run listing of the API over a store holding a million runs."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

from client import Api, timed
from harness import Bench
from report import Figure, median, ms
from sqlalchemy import create_engine, text

from modelrunner.store import queries
from modelrunner.store.database import Database
from modelrunner.store.tables import RunRow

ROWS = 1_000_000
MODELS = [f"model-{n:02d}" for n in range(20)]
MODEL = MODELS[7]
REPEATS = 20
TARGET = 0.050
# Share of each status among the stored runs: mostly finished, some of every other kind.
STATUS_WEIGHTS = {
    "succeeded": 70,
    "failed": 10,
    "cancelled": 5,
    "timed_out": 3,
    "queued": 4,
    "starting": 2,
    "running": 2,
    "preempted": 2,
    "lost": 2,
}
FINAL = ("succeeded", "failed", "timed_out", "cancelled")
ERRORS = {
    "failed": "the model ended with exit status 1",
    "timed_out": "the run timed out",
    "cancelled": "cancelled on request",
}
COLUMNS = [c.name for c in RunRow.__table__.columns]
BATCH = 50_000
# Asked for information beside the target query: other filters a client is likely to use.
VARIANTS: dict[str, dict[str, Any]] = {
    "no filter": {},
    "model only": {"model": MODEL},
    "three active statuses": {"status": ["queued", "starting", "running"]},
    "model + two statuses": {"model": MODEL, "status": ["failed", "timed_out"]},
}
VARIANT_REPEATS = 10


def measure(bench: Bench) -> list[Figure]:
    # A long poll and lease keep the dispatcher asleep after its first (empty) tick: the synthetic
    # queued rows name models without recorded versions and must not be picked up.
    with bench.server("list", poll_seconds="36000", lease_seconds="360000") as (server, database_url):
        began = time.perf_counter()
        _load(database_url)
        loaded = time.perf_counter() - began
        api = Api(server.url, server.token)
        query: dict[str, Any] = {"model": MODEL, "status": "succeeded", "limit": 50}
        page = api.runs(**query)
        if len(page["items"]) != 50 or page["next_cursor"] is None:
            raise RuntimeError(f"list: expected a full page, got {len(page['items'])} items")
        health = _repeat(api.healthz)
        http = _repeat(api.runs, **query)
        bare = _repeat_in_process(database_url)
        variants = {name: _repeat(api.runs, VARIANT_REPEATS, **params, limit=50) for name, params in VARIANTS.items()}
        api.close()
    value = median(http)
    figures = [
        Figure(
            name=f"list 1M runs: GET /runs?model&status=succeeded&limit=50 (median of {REPEATS})",
            measured=f"{ms(value)} HTTP; {ms(median(bare))} bare query",
            baseline=f"{ms(median(health))} GET /healthz",
            compared=ms(value),
            target=f"≤ {ms(TARGET)}",
            met=value <= TARGET,
            notes=[
                f"{ROWS:,} runs over {len(MODELS)} models, statuses "
                + ", ".join(f"{s} {w}%" for s, w in STATUS_WEIGHTS.items())
                + f"; inserted in {loaded:.0f} s"
                + (
                    " (COPY, then ANALYZE as autovacuum would)"
                    if bench.stores.kind == "postgresql"
                    else " (one transaction, executemany; no ANALYZE, as the application never runs one)"
                )
                + ".",
                "bare query: store.queries.list_runs in the benchmark process (limit 51, as the route asks), "
                "ORM rows included; one warm-up call before each series.",
            ],
        )
    ]
    figures += [
        Figure(
            name=f"list 1M runs, {name}: GET /runs?{_shown(params)}",
            measured=ms(median(samples)),
            baseline=f"{ms(median(health))} GET /healthz",
            compared=ms(median(samples)),
            target="(information)",
            met=None,
        )
        for (name, params), samples in zip(VARIANTS.items(), variants.values(), strict=True)
    ]
    return figures


def _repeat(call: Any, repeats: int = REPEATS, **kwargs: Any) -> list[float]:
    call(**kwargs)
    return [timed(lambda: call(**kwargs)) for _ in range(repeats)]


def _repeat_in_process(database_url: str) -> list[float]:
    database = Database(database_url)

    def once() -> None:
        with database.read() as session:
            rows = queries.list_runs(session, model=MODEL, statuses=["succeeded"], before_id=None, limit=51)
        assert len(rows) == 51

    try:
        return _repeat(once)
    finally:
        database.dispose()


def _shown(params: dict[str, Any]) -> str:
    parts = [f"{k}={v}" for k, values in params.items() for v in (values if isinstance(values, list) else [values])]
    return "&".join(parts) or "(none)"


# --- the million rows ----------------------------------------------------------------------------


def _rows() -> Iterator[tuple[Any, ...]]:
    """Runs in id order, created 30 s apart over the past year; tuples in COLUMNS order."""
    rng = random.Random(20261121)
    statuses = list(STATUS_WEIGHTS)
    weights = list(STATUS_WEIGHTS.values())
    versions = {m: [hashlib.sha256(f"{m}/{v}".encode()).hexdigest()[:16] for v in range(3)] for m in MODELS}
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30 * ROWS)
    for run_id in range(1, ROWS + 1):
        model = MODELS[rng.randrange(len(MODELS))]
        version = versions[model][min(2, run_id * 3 // ROWS)]
        status = rng.choices(statuses, weights)[0]
        params = {"i": run_id, "steps": rng.randrange(10, 1000), "rate": round(rng.random(), 4), "label": "bench"}
        created = start + dt.timedelta(seconds=30 * run_id)
        started = None if status in ("queued", "starting") else created + dt.timedelta(seconds=2)
        finished = created + dt.timedelta(seconds=62) if status in FINAL else None
        error = ERRORS.get(status)
        cache_key = hashlib.sha256(f"{model}/{version}/{json.dumps(params, sort_keys=True)}".encode()).hexdigest()
        values = {
            "id": run_id,
            "model_name": model,
            "model_version": version,
            "params": json.dumps(params),
            "cache_key": cache_key,
            "status": status,
            "cache_hit": False,
            "source_run_id": None,
            "slots": 1,
            "progress_fraction": 1.0 if status == "succeeded" else None,
            "progress_message": None,
            "error": error,
            "created_at": created,
            "started_at": started,
            "finished_at": finished,
        }
        yield tuple(values[c] for c in COLUMNS)


def _load(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        _load_sqlite(database_url.split("///", 1)[1])
    else:
        _load_postgresql(database_url)


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):  # the text form SQLAlchemy's SQLite DATETIME writes
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def _load_sqlite(path: str) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        # Only this loading connection trades durability for speed.
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA cache_size=-1000000")
        connection.execute("BEGIN IMMEDIATE")
        statement = f"INSERT INTO runs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        batch: list[tuple[Any, ...]] = []
        for row in _rows():
            batch.append(tuple(_sqlite_value(v) for v in row))
            if len(batch) == BATCH:
                connection.executemany(statement, batch)
                batch.clear()
        connection.executemany(statement, batch)
        connection.execute("COMMIT")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


def _load_postgresql(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        raw = engine.raw_connection()
        try:
            connection = raw.driver_connection  # the psycopg connection, for COPY
            assert connection is not None
            statement = f"COPY runs ({', '.join(COLUMNS)}) FROM STDIN"
            with connection.cursor() as cursor, cursor.copy(statement) as copy:
                for row in _rows():
                    copy.write_row(row)
            connection.commit()
        finally:
            raw.close()
        with engine.connect() as connection:
            connection.execute(text("SELECT setval(pg_get_serial_sequence('runs', 'id'), :n)"), {"n": ROWS})
            connection.commit()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("ANALYZE runs"))
    finally:
        engine.dispose()
