"""Performance benchmarks of modelrunner: ``python benchmarks/run.py [--database-url URL]
[--only NAME ...] [--quick]``. See benchmarks/README.md for what each figure means."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the figure modules beside this file, however it is started

import backends  # noqa: E402
import concurrency  # noqa: E402
import container_models  # noqa: E402
import datasets  # noqa: E402
import environments  # noqa: E402
import latency  # noqa: E402
import listing  # noqa: E402
import memory  # noqa: E402
import notebook_models  # noqa: E402
import pipelines  # noqa: E402
import r_models  # noqa: E402
import scale  # noqa: E402
import throughput  # noqa: E402
from harness import Bench  # noqa: E402
from report import Figure, markdown, text_table, write  # noqa: E402
from server import LAUNCHER, server_command  # noqa: E402
from stores import Stores  # noqa: E402

import modelrunner  # noqa: E402

FIGURES: dict[str, Callable[[Bench], list[Figure]]] = {
    "throughput": throughput.measure,
    "submit-to-start": latency.measure_submit_to_start,
    "concurrency": concurrency.measure,
    "scale": scale.measure,
    "cache-hit": latency.measure_cache_hit,
    "auth": latency.measure_auth,
    "list": listing.measure,
    "memory": memory.measure,
    "data-sync": datasets.measure_sync,
    "data-cache": datasets.measure_cache,
    "pipeline": pipelines.measure,
    "backends": backends.measure,
    "environments": environments.measure,
    "r-models": r_models.measure,
    "notebook-models": notebook_models.measure,
    "container-models": container_models.measure,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server to run against (postgresql://user@127.0.0.1:5432/db); each figure "
        "gets a new database bench_<random> on it, dropped afterwards. Default: SQLite in a temp folder",
    )
    parser.add_argument("--only", nargs="+", choices=list(FIGURES), metavar="NAME", help=f"of {', '.join(FIGURES)}")
    parser.add_argument(
        "--quick", action="store_true", help="smaller sizes and fewer rounds (see benchmarks/README.md)"
    )
    parser.add_argument(
        "--server",
        choices=["auto", "serve", "launcher"],
        default="auto",
        help="how to start the server: `python -m modelrunner serve`, benchmarks/launcher.py, or the "
        "first when it exists (auto)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (server logs, SQLite files)")
    parser.add_argument("--throughput-runs", type=int, metavar="N", help="no-op runs per throughput round (300)")
    parser.add_argument("--concurrency-clients", type=int, metavar="N", help="clients of the concurrency figure (50)")
    parser.add_argument(
        "--concurrency-seconds",
        type=float,
        metavar="S",
        help="how long the concurrency figure's clients submit (60; 10 with --quick)",
    )
    parser.add_argument(
        "--redis-url",
        default="redis://127.0.0.1:6379/11",
        help="the Redis database of the throughput figure's Celery baseline, flushed before and after (%(default)s)",
    )
    args = parser.parse_args()

    names = args.only or list(FIGURES)
    command = server_command(args.server)
    started = dt.datetime.now(dt.UTC)
    clock = time.perf_counter()
    load_before = os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="modelrunner-bench-"))
    stores = Stores(args.database_url, scratch)
    given = {
        "throughput_runs": args.throughput_runs,
        "concurrency_clients": args.concurrency_clients,
        "concurrency_seconds": args.concurrency_seconds,
    }
    sizes = {name: value for name, value in given.items() if value is not None}
    bench = Bench(
        stores,
        scratch,
        command,
        args.quick,
        redis_url=args.redis_url,
        **{"concurrency_seconds": 10 if args.quick else 60, **sizes},
    )
    print(f"modelrunner benchmarks on {stores.kind}; scratch folder {scratch}", flush=True)

    commit_before = _git_commit()
    figures: list[Figure] = []
    failed = False
    try:
        for name in names:
            print(f"-- {name} ...", flush=True)
            begun = time.perf_counter()
            try:
                measured = FIGURES[name](bench)
            except Exception as exc:  # one broken figure must not cost the others
                traceback.print_exc()
                failed = True
                measured = [Figure(name, "failed", "-", "-", "-", False, notes=[f"{type(exc).__name__}: {exc}"])]
            figures += measured
            print(text_table(measured), f"\n   ({time.perf_counter() - begun:.0f} s)\n", flush=True)
    finally:
        if not args.keep:
            _remove(scratch)

    # Every figure's server imports the source anew: a change during the run is worth knowing.
    commit = commit_before if commit_before == _git_commit() else f"{commit_before}, then {_git_commit()}"
    context = _context(stores.kind, command, args.quick, started, time.perf_counter() - clock, load_before, commit)
    context.append(("sizes", _sizes(bench)))
    print(text_table(figures))
    suffix = "-quick" if args.quick else ""
    if sizes:
        suffix += "-custom"  # sizes given on the command line: never in place of a run at the usual ones
    if args.only:
        suffix += "-only-" + "-".join(names)
    path = HERE / "results" / f"{started:%Y-%m-%d}-{stores.kind}{suffix}.md"
    write(path, markdown(f"modelrunner benchmarks, {stores.kind}, {started:%Y-%m-%d}", context, figures))
    print(f"\nwritten to {path.relative_to(HERE.parent)}")
    if failed:
        sys.exit(1)


def _context(
    kind: str,
    command: list[str],
    quick: bool,
    started: dt.datetime,
    seconds: float,
    load_before: tuple[float, ...],
    commit: str,
) -> list[tuple[str, str]]:
    shown = "benchmarks/launcher.py (uvicorn)" if str(LAUNCHER) in command else "python -m modelrunner serve"
    # Other work on the machine moves every figure; the load average says how much there was.
    load = "/".join(f"{v:.1f}" for v in load_before) + " before, " + "/".join(f"{v:.1f}" for v in os.getloadavg())
    return [
        ("store", kind),
        ("started (UTC)", f"{started:%Y-%m-%d %H:%M:%S}"),
        ("duration", f"{seconds / 60:.1f} min"),
        ("commit", commit),
        ("modelrunner imported from", str(Path(modelrunner.__file__).parent)),
        ("server", shown),
        ("machine", f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}, {platform.machine()}"),
        ("python", sys.version.split()[0]),
        ("load average (1/5/15 min)", load + " after"),
        ("mode", "quick" if quick else "full"),
    ]


def _sizes(bench: Bench) -> str:
    return (
        f"throughput {bench.throughput_runs} runs; concurrency {bench.concurrency_clients} clients for "
        f"{bench.concurrency_seconds:g} s"
    )


def _git_commit() -> str:
    try:
        found = subprocess.run(
            ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "-C", str(HERE), "status", "--porcelain", "--", "../src"], capture_output=True, text=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return found.stdout.strip() + (" (src modified)" if dirty.stdout.strip() else "")


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
