"""Fixtures shared by every tier: the database (SQLite, or PostgreSQL when
MODELRUNNER_TEST_DATABASE_URL is set), a copy of the test workspace, settings, an in-process
platform with its HTTP client, and a real ``modelrunner serve`` subprocess."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from modelrunner.api.app import create_app
from modelrunner.platform import Platform
from modelrunner.settings import Settings
from modelrunner.store.database import Database, normalise_url
from tests.identities import token_for

TESTS = Path(__file__).parent
REPO = TESTS.parent
POSTGRES_URL = os.environ.get("MODELRUNNER_TEST_DATABASE_URL")
FINAL = {"succeeded", "failed", "timed_out", "cancelled"}
# A PostgreSQL store is backed up and restored with PostgreSQL's own tools.
NEEDS_PG_TOOLS = pytest.mark.skipif(
    bool(POSTGRES_URL) and not (shutil.which("pg_dump") and shutil.which("pg_restore")),
    reason="pg_dump and pg_restore are not installed (Debian: apt-get install postgresql-client)",
)


def pytest_report_header() -> str:
    return f"modelrunner store: {'PostgreSQL ' + POSTGRES_URL if POSTGRES_URL else 'SQLite'}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On PostgreSQL, leave out what never touches the store: the SQLite run has shown it."""
    if not POSTGRES_URL:
        return
    left_out = [item for item in items if item.get_closest_marker("store_free")]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not item.get_closest_marker("store_free")]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under ``MODELRUNNER_TEST_NO_SKIPS=1`` (``.ci/run``, which installs every tool a test
    needs) a skipped test fails, with the reason it gave."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and os.environ.get("MODELRUNNER_TEST_NO_SKIPS") == "1" and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped where nothing may be (MODELRUNNER_TEST_NO_SKIPS=1): {report.longrepr}"


def pytest_sessionstart(session: pytest.Session) -> None:
    """What the processes the tests start inherit must not depend on how pytest was started."""
    # The CLIs write to pipes and must show what a script would capture, at the CLI's own width
    # for pipes. pytest-xdist's workers load readline without a terminal, and readline then
    # exports COLUMNS=80 and LINES=24, which every subprocess would inherit: drop them.
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)
    # A shell without job control starts background commands with SIGINT ignored, and every
    # process started from them inherits that: the tests that interrupt a CLI (Ctrl-C) would hang.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@contextmanager
def empty_database(folder: Path) -> Iterator[str]:
    """The URL of a new, empty database of the kind the suite runs on (SQLite in ``folder``),
    dropped afterwards."""
    if not POSTGRES_URL:
        yield f"sqlite:///{folder / 'modelrunner.db'}"
        return
    admin = create_engine(normalise_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    name = f"mr_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    base, _, _ = normalise_url(POSTGRES_URL).rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A new, empty database for one test."""
    with empty_database(tmp_path / "state") as url:
        yield url


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A private copy of tests/workspace (minus the deliberately broken model)."""
    destination = tmp_path / "workspace"
    shutil.copytree(TESTS / "workspace", destination, ignore=shutil.ignore_patterns("__pycache__", "broken"))
    return destination


@pytest.fixture
def settings(workspace: Path, database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        workspace=workspace,
        data_dir=tmp_path / "state",
        database_url=database_url,
        local_slots=2,
        lease_seconds=3,
        grace_seconds=1,
        poll_seconds=0.2,
    )


@pytest.fixture
def platform(settings: Settings) -> Platform:
    return Platform(settings)


@contextmanager
def admin_client(platform: Platform) -> Iterator[TestClient]:
    """The HTTP API of ``platform``, started, in process, signed in as the first site admin."""
    with TestClient(create_app(platform)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {token_for(platform.database, 'admin')}"
        yield test_client


@pytest.fixture
def client(platform: Platform) -> Iterator[TestClient]:
    """The HTTP API of a started platform, in process, signed in as the first site admin."""
    with admin_client(platform) as test_client:
        yield test_client


def wait_for_run(get: Callable[[str], Any], run_id: int, timeout: float = 30) -> dict[str, Any]:
    """Poll GET /api/v1/runs/{id} until the run is final; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = get(f"/api/v1/runs/{run_id}").json()
        if run["status"] in FINAL:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {run['status']} after {timeout}s")
        time.sleep(0.05)


def free_port() -> int:
    """A TCP port nothing listens on (at the time of the call) on 127.0.0.1, below the range the
    kernel gives outgoing connections: a server restarted on its port, or a daemon given it in
    its configuration, must not find a parallel test's connection holding it."""
    lowest_outgoing = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    while True:
        port = random.randrange(10000, lowest_outgoing)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


class Server:
    """A real ``modelrunner serve`` process; ``kill()`` is SIGKILL, ``start()`` starts it again
    (on the same port).

    Once started, ``env`` carries MODELRUNNER_TOKEN of the first site admin (for the CLI) and
    ``headers`` its Authorization header (for direct HTTP calls)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.url = ""
        self.env = dict(env)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._started_once = False
        self._use_port(free_port())

    def _use_port(self, port: int) -> None:
        """Listen on ``port``; MODELRUNNER_SERVER in ``env``, if it named this server, follows."""
        if self.url and self.env.get("MODELRUNNER_SERVER") == self.url:
            self.env["MODELRUNNER_SERVER"] = f"http://127.0.0.1:{port}"
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env["MODELRUNNER_PORT"] = str(port)

    def start(self, timeout: float = 60) -> None:
        """Start ``modelrunner serve`` and wait until it answers. With tests in parallel, the free
        port chosen may be taken by another test's server before this one binds it: a first start
        then moves to another port (a restart never does: the port is the server's address)."""
        for _ in range(5):
            if self._start(timeout):
                self._started_once = True
                return
            if self._started_once:
                break
            self._use_port(free_port())
        raise AssertionError(f"modelrunner serve could not listen on {self.url}: {self.log_path.read_text()[-3000:]}")

    def _start(self, timeout: float) -> bool:
        """True once the server answers; False when its port was taken by someone else."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "modelrunner", "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        # One client for every poll: httpx.get() builds a client, and its TLS context, each time
        # (some 30 ms of CPU), which the server's own start would wait for on a busy machine.
        with httpx.Client(timeout=1) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    with self.log_path.open("rb") as log:
                        log.seek(offset)
                        output = log.read().decode(errors="replace")
                    if "address already in use" in output.lower():
                        return False
                    raise AssertionError(f"modelrunner serve exited: {output[-3000:]}")
                try:
                    answered = http.get(f"{self.url}/api/v1/healthz").status_code == 200
                except httpx.HTTPError:
                    answered = False
                # Another test's server on the same port would answer too: only ours counts.
                if answered and self._listening():
                    self._sign_in()
                    return True
                time.sleep(0.1)
        self.kill()
        raise AssertionError(f"modelrunner serve did not answer in {timeout}s: {self.log_path.read_text()[-3000:]}")

    def _listening(self) -> bool:
        """Whether this server's process is the one listening on ``port``."""
        assert self.process is not None
        try:
            connections = psutil.Process(self.process.pid).net_connections(kind="tcp")
        except psutil.Error:
            return False
        return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == self.port for c in connections)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.env['MODELRUNNER_TOKEN']}"}

    def _sign_in(self) -> None:
        if "MODELRUNNER_TOKEN" in self.env:
            return
        database = Database(self.env["MODELRUNNER_DATABASE_URL"])
        try:
            self.env["MODELRUNNER_TOKEN"] = token_for(database, "admin")
        finally:
            database.dispose()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def server_env(settings: Settings) -> dict[str, str]:
    """Environment for a ``modelrunner`` subprocess using the test's workspace and database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELRUNNER_")}
    env.update(
        MODELRUNNER_WORKSPACE=str(settings.workspace),
        MODELRUNNER_DATA_DIR=str(settings.state_dir),
        MODELRUNNER_DATABASE_URL=settings.resolved_database_url,
        MODELRUNNER_LOCAL_SLOTS=str(settings.local_slots),
        MODELRUNNER_LEASE_SECONDS=str(settings.lease_seconds),
        MODELRUNNER_GRACE_SECONDS=str(settings.grace_seconds),
        MODELRUNNER_POLL_SECONDS=str(settings.poll_seconds),
    )
    return env


@pytest.fixture
def server(server_env: dict[str, str], tmp_path: Path) -> Iterator[Server]:
    """A started ``modelrunner serve``; the CLI finds it through MODELRUNNER_SERVER in server.env."""
    running = Server(server_env, tmp_path / "server.log")
    running.env["MODELRUNNER_SERVER"] = running.url
    running.start()
    try:
        yield running
    finally:
        running.stop()
