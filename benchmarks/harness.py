"""What every figure is given: the run's options, fresh databases and servers to measure."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from server import HERE, Server
from stores import Stores

WORKSPACE = HERE / "workspace"


@dataclass(frozen=True)
class Bench:
    stores: Stores
    scratch: Path
    command: list[str]
    quick: bool
    slots: int = os.cpu_count() or 1
    throughput_runs: int = 300  # the throughput figure's no-op runs (--throughput-runs)
    concurrency_clients: int = 50
    concurrency_seconds: float = 60
    redis_url: str = "redis://127.0.0.1:6379/11"  # the Celery baseline's broker and results; flushed

    @contextmanager
    def server(self, label: str, **settings: str) -> Iterator[tuple[Server, str]]:
        """A started server on a new database and data folder; yields it and the database URL.

        ``settings`` are extra ``MODELRUNNER_*`` values (lower-case names, as in Settings).
        """
        with self.stores.fresh(label) as database_url, self.server_on(label, database_url, **settings) as server:
            yield server, database_url

    @contextmanager
    def server_on(self, label: str, database_url: str, **settings: str) -> Iterator[Server]:
        """A started server on an existing database, with the data folder of ``label`` (the one a
        server of the same label used before on that database, so its model snapshots are found)."""
        server = Server(
            self.command,
            {
                "workspace": str(WORKSPACE),
                "data_dir": str(self.scratch / label / "state"),
                "database_url": database_url,
                "local_slots": str(self.slots),
                **settings,
            },
            self.scratch / label / "server.log",
        )
        server.start()
        try:
            yield server
        except BaseException:
            print(f"-- the end of {label}'s server log:\n{server.log_tail()}", file=sys.stderr)
            raise
        finally:
            server.stop()
