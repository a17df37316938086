"""Fixtures shared by every tier: the database (SQLite, or PostgreSQL when
MODELRUNNER_TEST_DATABASE_URL is set), a copy of the test workspace, settings, an in-process
platform with its HTTP client, and a real ``modelrunner serve`` subprocess."""

from __future__ import annotations

import os
import shutil
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


def pytest_report_header() -> str:
    return f"modelrunner store: {'PostgreSQL ' + POSTGRES_URL if POSTGRES_URL else 'SQLite'}"


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A new, empty database for one test."""
    if not POSTGRES_URL:
        yield f"sqlite:///{tmp_path / 'state' / 'modelrunner.db'}"
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
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A real ``modelrunner serve`` process; ``kill()`` is SIGKILL, ``start()`` starts it again.

    Once started, ``env`` carries MODELRUNNER_TOKEN of the first site admin (for the CLI) and
    ``headers`` its Authorization header (for direct HTTP calls)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**env, "MODELRUNNER_PORT": str(self.port)}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "modelrunner", "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"modelrunner serve exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/api/v1/healthz", timeout=1).status_code == 200:
                    self._sign_in()
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"modelrunner serve did not answer: {self.log_path.read_text()[-3000:]}")

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
