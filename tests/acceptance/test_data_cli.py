"""``modelrunner data`` and input pins as a user meets them: the real CLI as a subprocess against a
real ``modelrunner serve`` on a workspace whose datasets are a local git repository and a file
served over HTTP (held back by the test, so a sync is seen in progress)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import data_fixtures
from tests.acceptance.test_cli import cli, ok, wait_until
from tests.conftest import FINAL, Server
from tests.data_fixtures import GitRepo
from tests.dataset_workspace import build_workspace, git_dataset

# The shared fixtures this module uses; pytest finds them by these names.
git_repo = data_fixtures.git_repo

# Two MiB: the HTTP source reads in 1 MiB chunks, so the first half is one progress report.
FEED = b"".join(b"2024-01-01,%09d\n" % row for row in range(2 * 1024 * 1024 // 21)).ljust(2 * 1024 * 1024, b"\n")


class HeldFile:
    """An HTTP server with one file, ``/feed.csv``: it sends the headers and, a moment later, the
    first half of the body, then waits for ``release()`` before sending the rest."""

    def __init__(self) -> None:
        self.released = threading.Event()
        held = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(FEED)))
                self.end_headers()
                # After the sync's first progress report, which it writes at most twice a second.
                time.sleep(0.6)
                self.wfile.write(FEED[: len(FEED) // 2])
                self.wfile.flush()
                held.released.wait(30)
                self.wfile.write(FEED[len(FEED) // 2 :])

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/feed.csv"
        self._thread = threading.Thread(target=self._server.serve_forever, name="held-file")
        self._thread.start()

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def feed() -> Iterator[HeldFile]:
    served = HeldFile()
    try:
        yield served
    finally:
        served.close()


@pytest.fixture
def workspace(tmp_path: Path, git_repo: GitRepo, feed: HeldFile) -> Path:
    """The dataset workspace with three datasets: ``cases`` (git), ``feed`` (http, held back) and
    ``gone`` (a repository that does not exist)."""
    return build_workspace(
        tmp_path / "workspace",
        {
            "cases": git_dataset(git_repo),
            "feed": {"source": "http", "url": feed.url, "poll": "1d", "description": "Daily feed"},
            "gone": {"source": "git", "repo": "no-such-repo"},
        },
    )


def api(server: Server, path: str) -> Any:
    return httpx.get(headers=server.headers, url=f"{server.url}/api/v1{path}").json()


def test_help_describes_the_data_commands() -> None:
    env = dict(os.environ)
    group = ok("data", "--help", env=env)
    for command in ("list", "versions", "show", "sync"):
        assert command in group
    sync_help = ok("data", "sync", "--help", env=env)
    for option in ("--all", "--delete", "--no-wait", "--json", "--server", "MODELRUNNER_SYNC_DELETE"):
        assert option in sync_help
    run_help = ok("run", "--help", env=env)
    assert "--input" in run_help and "MODELRUNNER_INPUT" in run_help and "30m" in run_help


def test_sync_list_show_run_on_pinned_versions_and_delete(server: Server, git_repo: GitRepo) -> None:
    env = server.env
    first = git_repo.commit({"data/cases.csv": "a,1\nb,2\n"}, "two rows")
    git_repo.commit({"README.md": "docs"}, "docs only")
    second = git_repo.commit({"data/cases.csv": "a,1\nb,2\nc,3\n", "data/more.txt": "x" * 2048}, "three rows")

    listed = ok("data", "list", env=env)
    assert "cases" in listed and "git" in listed and "never" in listed
    assert "1d" in listed and "on request" in listed  # poll intervals

    synced = cli("data", "sync", "cases", env=env)
    assert synced.returncode == 0, synced.stderr
    assert f"2 new versions, newest {second[:12]}" in synced.stdout
    assert f"no new version; newest {second[:12]}" in ok("data", "sync", "cases", env=env)

    rows = [line for line in ok("data", "list", env=env).splitlines() if line.strip().startswith("cases")]
    assert "2" in rows[0].split() and second[:12] in rows[0] and "succeeded" in rows[0]

    versions = ok("data", "versions", "cases", env=env)
    assert versions.index(second[:12]) < versions.index(first[:12])  # newest first
    assert "three rows" in versions and "2.1 kB" in versions  # 2,060 bytes

    shown = ok("data", "show", "cases", second[:8], env=env)
    assert second in shown and "data/more.txt" in shown and "2.0 kB" in shown and "discovered" in shown

    # A run on the newest data, and one pinned to the first version by a prefix of its sha.
    newest = ok("run", "counter", "--wait", env=env)
    assert f"cases=cases@{second[:12]}" in newest and "succeeded" in newest
    run = json.loads(ok("run", "counter", "-i", f"cases={first[:7]}", "--wait", "--json", env=env))
    assert run["inputs"] == {"cases": {"dataset": "cases", "version": first}}
    assert f"cases=cases@{first[:12]}" in ok("runs", "show", str(run["id"]), env=env)
    cached = ok("run", "counter", "-i", f"cases={first}", "--max-age", "2d", env=env)
    assert "cache hit" in cached and f"cases=cases@{first[:12]}" in cached

    bad_pin = cli("run", "counter", "-i", "cases=ffffff", env=env)
    assert bad_pin.returncode == 1
    assert bad_pin.stderr.startswith("error: inputs.cases: ") and "has no version 'ffffff'" in bad_pin.stderr
    malformed = cli("run", "counter", "-i", "cases", env=env)
    assert malformed.returncode == 2 and "input=version" in malformed.stderr
    bad_age = cli("run", "counter", "--max-age", "two days", env=env)
    assert bad_age.returncode == 2 and "'30m'" in bad_age.stderr
    # --local syncs the dataset into a store of its own and runs on the same first version.
    out = git_repo.path.parent / "local-out"
    local = cli(
        "run", "counter", "--local", "--workspace", env["MODELRUNNER_WORKSPACE"], "-i", f"cases={first[:7]}",
        "--output-dir", str(out), env=env,
    )  # fmt: skip
    assert local.returncode == 0 and "succeeded" in local.stdout, local.stdout + local.stderr
    assert (out / "count.json").exists()
    unknown = cli("data", "versions", "nosuch", env=env)
    assert unknown.returncode == 1 and "unknown dataset 'nosuch'" in unknown.stderr
    failed = cli("data", "sync", "gone", env=env)
    assert failed.returncode == 1
    assert failed.stderr.count("error:") == 1 and "failed: dataset 'gone'" in failed.stderr

    # Deleting the versions is refused while a run computed on them is unfinished.
    busy = httpx.post(
        headers=server.headers, url=f"{server.url}/api/v1/models/counter/runs", json={"params": {"sleep": 30}}
    ).json()
    wait_until(server, busy["id"], {"running"})
    refused = cli("data", "sync", "cases", "--delete", env=env)
    assert refused.returncode == 1
    assert f"error: dataset 'cases' is used by 1 unfinished run(s) ({busy['id']})" in refused.stderr
    httpx.post(headers=server.headers, url=f"{server.url}/api/v1/runs/{busy['id']}/cancel")
    wait_until(server, busy["id"], FINAL)
    assert "removed 2 versions of cases" in ok("data", "sync", "cases", "--delete", env=env)
    assert api(server, "/datasets/cases/versions") == []


def test_a_long_sync_shows_progress_and_a_second_request_joins_it(server: Server, feed: HeldFile) -> None:
    env = server.env
    queued = ok("data", "sync", "feed", "--no-wait", env=env)
    assert queued.startswith("sync ") and " of feed: " in queued
    sync_id = int(queued.split()[1])

    def halfway() -> bool:
        progress = api(server, f"/datasets/feed/syncs/{sync_id}")["progress"]
        return progress["fraction"] == pytest.approx(0.5, abs=0.05)

    deadline = time.monotonic() + 15
    while not halfway():
        assert time.monotonic() < deadline, api(server, f"/datasets/feed/syncs/{sync_id}")
        time.sleep(0.05)
    joined = json.loads(ok("data", "sync", "feed", "--no-wait", "--json", env=env))
    assert (joined["id"], joined["joined"], joined["status"]) == (sync_id, True, "running")

    follower = subprocess.Popen(
        [sys.executable, "-m", "modelrunner", "data", "sync", "feed"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stderr is not None
        first_line = follower.stderr.readline()  # printed once the server answered the request
        assert f"a sync of feed was already running (sync {sync_id}); following it" in first_line
        feed.release()
        stdout, stderr = follower.communicate(timeout=30)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
    assert follower.returncode == 0, stderr
    assert "Traceback" not in stdout + stderr
    assert f"sync {sync_id} (feed) succeeded" in stderr  # the progress bar's last state
    version = api(server, "/datasets/feed")["newest"]["version"]
    assert f"1 new version, newest {version[:12]}" in stdout
    shown = ok("data", "show", "feed", version, env=env)
    assert "feed.csv" in shown and "2.1 MB" in shown
