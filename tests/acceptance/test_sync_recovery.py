"""A dataset sync cut off by a server kill records nothing; after the restart the sync shows as
failed, the dataset's versions are as before, and a new sync records the version once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server

BODY = b"date,cases\n2026-11-01,10\n2026-11-02,12\n"


class _StallingSource:
    """A real HTTP server whose first response sends half its body, then stalls until released."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.release = threading.Event()
        source = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(BODY)))
                self.end_headers()
                if not source.requested.is_set():
                    source.requested.set()
                    self.wfile.write(BODY[: len(BODY) // 2])
                    self.wfile.flush()
                    source.release.wait(30)
                    return
                self.wfile.write(BODY)

            def log_message(self, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/cases.csv"
        self._thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.release.set()
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def stalling_source() -> Iterator[_StallingSource]:
    source = _StallingSource()
    yield source
    source.close()


@pytest.fixture
def server_with_stalling_dataset(
    server_env: dict[str, str], workspace: Path, tmp_path: Path, stalling_source: _StallingSource
) -> Iterator[Server]:
    with (workspace / "modelrunner.yaml").open("a") as spec:
        spec.write(f"datasets:\n  remote:\n    source: http\n    url: {stalling_source.url}\n")
    running = Server(server_env, tmp_path / "server.log")
    running.start()
    try:
        yield running
    finally:
        running.stop()


def test_a_sync_killed_halfway_records_nothing(
    server_with_stalling_dataset: Server, stalling_source: _StallingSource
) -> None:
    server = server_with_stalling_dataset
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
        sync = http.post("/api/v1/datasets/remote/sync").json()
        assert stalling_source.requested.wait(20), "the sync never reached the source"

        server.kill()
        stalling_source.release.set()
        server.start()

        interrupted = http.get(f"/api/v1/datasets/remote/syncs/{sync['id']}").json()
        versions_after_restart = http.get("/api/v1/datasets/remote/versions").json()
        again = http.post("/api/v1/datasets/remote/sync").json()
        deadline = time.monotonic() + 20
        while again["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
            time.sleep(0.1)
            again = http.get(f"/api/v1/datasets/remote/syncs/{again['id']}").json()
        versions = http.get("/api/v1/datasets/remote/versions").json()

    assert interrupted["status"] == "failed"
    assert "interrupted" in interrupted["error"]
    assert versions_after_restart == []
    assert again["status"] == "succeeded" and again["added"] == 1
    assert [v["total_size"] for v in versions] == [len(BODY)]
