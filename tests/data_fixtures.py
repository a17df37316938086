"""Real data sources for tests: a local git repository, an S3 endpoint (moto in server mode) and an
HTTP server over a folder.

Make the fixtures visible where they are needed. In a conftest::

    from tests.data_fixtures import git_repo, http_server, moto_server, s3  # noqa: F401

In a test module, bind them to module names, so that test parameters of the same names do not
read as redefinitions to the linter::

    from tests import data_fixtures
    from tests.data_fixtures import S3, GitRepo, HttpServer

    git_repo = data_fixtures.git_repo
    moto_server = data_fixtures.moto_server  # s3 needs it
    s3 = data_fixtures.s3
    http_server = data_fixtures.http_server

``git_repo`` gives a fresh repository (branch ``main``) with a ``commit`` helper; ``s3`` gives a
client of a session-wide moto server with dummy credentials in the environment, and makes buckets
with unique names; ``http_server`` serves a folder the test changes freely, with ETag and
Last-Modified, answering conditional requests with 304.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

# Commits get these times, one minute apart, so tests can assert on commit times.
GIT_EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


class GitRepo:
    """A git repository with a work tree at ``path``, on branch ``main``, cut off from any user
    or system git configuration."""

    def __init__(self, path: Path, branch: str = "main") -> None:
        self.path = path
        self.branch = branch
        self._commits = 0
        self._env = {
            **{key: value for key, value in os.environ.items() if not key.startswith("GIT_")},
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Test Author",
            "GIT_AUTHOR_EMAIL": "author@example.org",
            "GIT_COMMITTER_NAME": "Test Committer",
            "GIT_COMMITTER_EMAIL": "committer@example.org",
        }
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "--quiet", "--initial-branch", branch)

    @property
    def url(self) -> str:
        """The repository as a ``file://`` URL."""
        return self.path.as_uri()

    def git(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        """Run git in the work tree; its stdout. Raises CalledProcessError on failure."""
        done = subprocess.run(
            ["git", *args],
            cwd=self.path,
            env={**self._env, **(env or {})},
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout

    def commit(self, files: Mapping[str, str | bytes | None], message: str, *, when: dt.datetime | None = None) -> str:
        """Write ``files`` (path -> content; None deletes the file), commit everything, return the sha.

        The commit time is ``when``, or GIT_EPOCH plus one minute per commit made so far.
        """
        for relative, content in files.items():
            target = self.path / relative
            if content is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                target.write_text(content)
            else:
                target.write_bytes(content)
        self._commits += 1
        moment = (when or GIT_EPOCH + dt.timedelta(minutes=self._commits)).isoformat()
        self.git("add", "--all")
        self.git(
            "commit",
            "--quiet",
            "--allow-empty",
            "--message",
            message,
            env={"GIT_AUTHOR_DATE": moment, "GIT_COMMITTER_DATE": moment},
        )
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()


@pytest.fixture
def git_repo(tmp_path: Path) -> GitRepo:
    """A new, empty repository at ``tmp_path / "origin"``."""
    return GitRepo(tmp_path / "origin")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """An S3-compatible endpoint (moto in server mode) on 127.0.0.1 for the whole session: its URL."""
    from moto.server import ThreadedMotoServer  # heavy import, paid only by tests that use S3

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@dataclass
class S3:
    """A client of the moto server. Buckets are shared by the session: make yours with ``create_bucket``."""

    endpoint_url: str
    client: Any

    @property
    def options(self) -> dict[str, Any]:
        """The fsspec storage options that reach this endpoint."""
        return {"endpoint_url": self.endpoint_url}

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (by default with a unique name); its name."""
        bucket = name or f"test-{uuid.uuid4().hex[:16]}"
        self.client.create_bucket(Bucket=bucket)
        return bucket

    def put(self, bucket: str, key: str, content: str | bytes) -> None:
        self.client.put_object(Bucket=bucket, Key=key, Body=content.encode() if isinstance(content, str) else content)

    def delete(self, bucket: str, key: str) -> None:
        self.client.delete_object(Bucket=bucket, Key=key)

    def read(self, bucket: str, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body


@pytest.fixture
def s3(moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[S3]:
    """A client of the moto server, with dummy AWS credentials in the environment (and the user's
    own AWS configuration out of reach) for the code under test."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    yield S3(moto_server, boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1"))
    # s3fs keeps filesystems (and their connections) per set of options; drop those of this test.
    from s3fs import S3FileSystem

    S3FileSystem.clear_instance_cache()


@dataclass
class HttpServer:
    """A folder served over HTTP on 127.0.0.1; ``responses`` records (path, status) of every answer.

    Paths given to ``url``, ``write``, ``fail``, ``delay`` and ``statuses`` are relative to the root.
    """

    root: Path
    base_url: str
    responses: list[tuple[str, int]] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, path: str, status: int) -> None:
        """Answer requests for ``path`` with ``status`` (e.g. 500) from now on."""
        self.failures[f"/{path.lstrip('/')}"] = status

    def delay(self, path: str, seconds: float) -> None:
        """Wait ``seconds`` before answering requests for ``path`` (to provoke client timeouts)."""
        self.delays[f"/{path.lstrip('/')}"] = seconds

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def write(self, path: str, content: str | bytes) -> Path:
        """Create or change a served file."""
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)
        return target

    def statuses(self, path: str) -> list[int]:
        """The statuses answered so far for ``path`` (query string left out), in order."""
        with self._lock:
            return [status for served, status in self.responses if served.split("?")[0] == f"/{path.lstrip('/')}"]

    def record(self, path: str, status: int) -> None:
        with self._lock:
            self.responses.append((path, status))


class _Handler(SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler with a strong ETag (a content hash) and If-None-Match support."""

    server: _Server
    _etag: str | None = None

    def send_head(self) -> Any:
        served = self.server.served
        route = self.path.split("?")[0]
        time.sleep(served.delays.get(route, 0))
        if route in served.failures:
            self.send_error(served.failures[route])
            return None
        path = Path(self.translate_path(self.path))
        self._etag = None
        if path.is_file():
            etag = f'"{hashlib.sha256(path.read_bytes()).hexdigest()[:32]}"'
            asked = [tag.strip() for tag in self.headers.get("If-None-Match", "").split(",")]
            if etag in asked or "*" in asked:
                self.send_response(HTTPStatus.NOT_MODIFIED)
                self.send_header("ETag", etag)
                self.end_headers()
                return None
            self._etag = etag
        return super().send_head()

    def end_headers(self) -> None:
        if self._etag:
            self.send_header("ETag", self._etag)
            self._etag = None
        super().end_headers()

    def send_response(self, code: int, message: str | None = None) -> None:
        self.server.served.record(self.path, int(code))
        super().send_response(code, message)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the test's own assertions say what matters


class _Server(ThreadingHTTPServer):
    # Request threads are joined on close, so none outlives the fixture.
    daemon_threads = False
    block_on_close = True
    served: HttpServer


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[HttpServer]:
    """An HTTP server over the empty folder ``tmp_path / "www"``, stopped after the test."""
    root = tmp_path / "www"
    root.mkdir()
    server = _Server(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    server.served = served = HttpServer(root, f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, name="test-http-server")
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
