"""What an operator reads from a real ``modelrunner serve``: its banner (where the web UI and the API
docs are, how to give the admin a password), its log as text lines or JSON lines (every line about
an attempt names its run, attempt, model and backend; requests are logged the same way), the
log level, and never a secret: not a token, a password, a webhook's signing secret or a URL's key."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.acceptance.test_cli import cli
from tests.conftest import Server, free_port

BANNER = ("modelrunner listening on ", "  web UI:", "  API docs:", "created the first site admin", "'admin' has no")
NO_PASSWORD = "'admin' has no password for the web UI yet; give it one with: "
QUERY_SECRET = "query-secret-Kx71-never-logged"
HOOK_SECRET = "webhook-secret-Pq52-never-logged"
URL_KEY = "url-key-Zt93-never-logged"
PASSWORD = "password-Wm40-never-logged"
TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: .*")


def started(env: dict[str, str], log: Path, **variables: str) -> Server:
    server = Server({**env, **variables}, log)
    server.start()
    return server


def submit(http: httpx.Client, model: str, params: dict[str, Any] | None = None) -> int:
    response = http.post(f"/api/v1/models/{model}/runs", json={"params": params or {}})
    assert response.status_code == 201, response.text
    run_id: int = response.json()["id"]
    return run_id


def ended(http: httpx.Client, run_id: int, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status: str = http.get(f"/api/v1/runs/{run_id}").json()["status"]
        if status in ("succeeded", "failed", "timed_out", "cancelled"):
            return status
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not end in {timeout}s")


def json_lines(printed: str) -> list[dict[str, Any]]:
    """Every line the server printed, parsed: a line that is no JSON fails the test here."""
    return [json.loads(line) for line in printed.splitlines()]


def signs_in(url: str, password: str) -> bool:
    """Whether the web UI's sign-in form takes admin with ``password``."""
    with httpx.Client(base_url=url) as browser:
        page = browser.get("/signin").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf, page
        form = {"username": "admin", "password": password, "csrf": csrf.group(1)}
        return browser.post("/signin", data=form).status_code == 303


def test_json_lines_name_each_attempts_run_model_and_backend_and_hold_no_secret(
    server_env: dict[str, str], workspace: Path, tmp_path: Path
) -> None:
    spec = yaml.safe_load((workspace / "modelrunner.yaml").read_text())
    spec["notifications"] = {"webhooks": {"attempts": 2, "backoff_seconds": 0.2, "timeout_seconds": 2}}
    (workspace / "modelrunner.yaml").write_text(yaml.safe_dump(spec))
    log = tmp_path / "server.log"
    server = started(server_env, log, MODELRUNNER_LOG_FORMAT="json")
    nobody = f"http://127.0.0.1:{free_port()}/hook?key={URL_KEY}"  # nothing listens: every send fails
    try:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as http:
            subscribed = http.post(
                "/api/v1/subscriptions",
                json={"model": "failing", "channel": "webhook", "url": nobody, "secret": HOOK_SECRET},
            )
            assert subscribed.status_code == 201, subscribed.text
            succeeded, failed = submit(http, "noop", {"n": 1}), submit(http, "failing")
            assert (ended(http, succeeded), ended(http, failed)) == ("succeeded", "failed")
            assert http.get("/api/v1/runs", params={"token": QUERY_SECRET}).status_code == 200
            deadline = time.monotonic() + 30
            while '"message": "delivery ' not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.2)
        assert not signs_in(server.url, PASSWORD)  # no password yet: refused
    finally:
        server.stop()

    printed = log.read_text()
    lines = json_lines(printed)
    banner = [line["message"] for line in lines if line["logger"] == "modelrunner.serve"]
    assert banner[1:3] == [f"web UI:   {server.url}/", f"API docs: {server.url}/docs"]
    assert banner[0].startswith(f"modelrunner listening on {server.url} ") and banner[-1].startswith("'admin' has no")
    for secret in (QUERY_SECRET, HOOK_SECRET, URL_KEY, PASSWORD, server.env["MODELRUNNER_TOKEN"]):
        assert secret not in printed
    [sent] = [line for line in lines if line["message"].startswith("delivery ") and line["level"] == "WARNING"][:1]
    assert sent["run_id"] == failed, sent  # a notification's lines name the run it is about

    dispatched = [line for line in lines if line["logger"] == "modelrunner.dispatcher"]
    about = {run: [line for line in dispatched if line.get("run_id") == run] for run in (succeeded, failed)}
    assert [line["message"].split(" ", 2)[2] for line in about[succeeded]] == [
        f"of run {succeeded} launched",
        "started",
        "succeeded",
    ]
    assert [(line["level"], line["message"].split(" ", 2)[2]) for line in about[failed]] == [
        ("INFO", f"of run {failed} launched"),
        ("INFO", "started"),
        ("WARNING", "failed: the model ended with exit status 3"),
    ] * 2  # a retry: two attempts
    for run, model in ((succeeded, "noop"), (failed, "failing")):
        for line in about[run]:
            assert line["model"] == model and line["backend"] == "local"
            assert line["message"].startswith(f"attempt {line['attempt_id']} ")
            assert "time" in line
    # Whatever the platform logs about an attempt names its run, model and backend.
    for line in lines:
        if line["logger"].startswith("modelrunner.") and re.match(r"attempt \d+", line["message"]):
            assert {"run_id", "attempt_id", "model", "backend"} <= line.keys(), line

    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    assert {"method": "POST", "path": "/api/v1/models/noop/runs", "status_code": 201}.items() <= next(
        line for line in access if line["path"] == "/api/v1/models/noop/runs"
    ).items()
    [listing] = [line for line in access if line["path"] == "/api/v1/runs"]
    assert listing["message"].endswith('"GET /api/v1/runs HTTP/1.1" 200')  # the query string is left out


def test_text_log_banner_and_level(server_env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    server = started(server_env, log)
    try:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as http:
            run = submit(http, "noop", {"n": 2})
            assert ended(http, run) == "succeeded"
    finally:
        server.stop()

    printed = log.read_text()
    banner = [line for line in printed.splitlines() if line.startswith(BANNER)]
    assert banner[1:3] == [f"  web UI:   {server.url}/", f"  API docs: {server.url}/docs"]
    for line in printed.splitlines():
        assert line.startswith(BANNER) or TEXT_LINE.fullmatch(line) or line.startswith(" "), line
    assert re.search(
        rf"^\S+ \S+ INFO modelrunner\.dispatcher: attempt (\d+) succeeded \[run {run}, attempt \1, model noop, "
        r"backend local\]$",
        printed,
        re.MULTILINE,
    ), printed
    assert re.search(
        r'INFO uvicorn\.access: 127\.0\.0\.1:\d+ - "POST /api/v1/models/noop/runs HTTP/1\.1" 201$',
        printed,
        re.MULTILINE,
    )

    # The command the banner gives works as printed, from anywhere, without MODELRUNNER_* variables.
    [command] = [line.split(NO_PASSWORD, 1)[1] for line in banner if line.startswith(NO_PASSWORD)]
    words = shlex.split(command)
    assert words[:4] == ["modelrunner", "users", "set-password", "admin"]
    bare = {key: value for key, value in server_env.items() if not key.startswith("MODELRUNNER_")}
    result = subprocess.run(
        [sys.executable, "-m", "modelrunner", *words[1:], "--password-stdin"],
        env=bare,
        cwd=tmp_path,
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr

    offset = len(printed)
    server.env["MODELRUNNER_LOG_LEVEL"] = "warning"
    server.start()
    try:
        for page in ("/", "/docs"):  # where the banner pointed
            assert httpx.get(f"{server.url}{page}", follow_redirects=True).status_code == 200
        assert signs_in(server.url, PASSWORD)
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=10) as http:
            assert ended(http, submit(http, "failing")) == "failed"
    finally:
        server.stop()
    again = log.read_text()[offset:]
    assert NO_PASSWORD not in again  # admin has one now
    logged = [line for line in again.splitlines() if not line.startswith(BANNER)]
    assert logged and all(" WARNING " in line or " ERROR " in line for line in logged if TEXT_LINE.fullmatch(line)), (
        again
    )
    assert any("attempt" in line and "failed: the model ended with exit status 3" in line for line in logged), again


@pytest.mark.store_free
@pytest.mark.parametrize("option", [["--log-format", "yaml"], ["--log-level", "loud"]])
def test_a_bad_log_option_is_refused_by_name(option: list[str], tmp_path: Path) -> None:
    bare = {key: value for key, value in os.environ.items() if not key.startswith("MODELRUNNER_")}
    result = cli("serve", "--workspace", str(tmp_path), *option, env=bare)
    assert result.returncode == 2
    assert option[0] in result.stderr and "Traceback" not in result.stderr
