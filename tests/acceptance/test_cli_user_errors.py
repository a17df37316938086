"""Mistakes of a user's setup that the command line answers with one line saying what is wrong,
never with a traceback, another site's page or "this is a bug": a server address that is some
other web server, a download folder that cannot be written. (A library whose extra is missing:
test_readme_install.py, in a venv without extras.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.acceptance.test_cli import cli, ok
from tests.conftest import Server, free_port


def user_env(**settings: str) -> dict[str, str]:
    """The environment of a user's shell, with these MODELRUNNER_ settings only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELRUNNER_")}
    env.update(settings)
    return env


@pytest.fixture
def web_site(tmp_path: Path) -> Iterator[str]:
    """Python's http.server over a folder with an HTML home page and a file where the API's model
    list would be: a real web server that is not modelrunner."""
    root = tmp_path / "site"
    (root / "api" / "v1").mkdir(parents=True)
    (root / "index.html").write_text("<html>\n<body>\n<h1>Our lab</h1>\n</body>\n</html>\n", encoding="utf-8")
    (root / "api" / "v1" / "models").write_text("<html>\n<p>not an API</p>\n</html>\n", encoding="utf-8")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "http.server did not start"
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.store_free
@pytest.mark.parametrize(
    ("command", "answer"),
    [
        (["runs", "list"], "404 File not found, text/html"),  # http.server's HTML error page
        (["models", "list"], "200 OK, application/octet-stream"),  # a file where the API would be
    ],
)
def test_another_web_server_is_named_in_one_line_without_its_page(
    web_site: str, command: list[str], answer: str
) -> None:
    done = cli(*command, env=user_env(MODELRUNNER_SERVER=web_site, MODELRUNNER_TOKEN="t0ken"))

    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: the server at {web_site} did not answer as the modelrunner API ({answer}); "
        "is --server or MODELRUNNER_SERVER the address of `modelrunner serve`?"
    ]
    assert done.stdout == ""


def test_downloading_into_a_folder_that_cannot_be_made_names_the_folder(server: Server, tmp_path: Path) -> None:
    run_id = str(json.loads(ok("run", "noop", "-p", "n=1", "--wait", "--json", env=server.env))["id"])
    # A regular file where a parent folder should be: no one, not even root, can create the folder.
    (tmp_path / "report.txt").write_text("notes\n", encoding="utf-8")
    folder = tmp_path / "report.txt" / "results"

    done = cli("runs", "outputs", run_id, "--download", str(folder), env=server.env)

    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"error: cannot save outputs in {folder}: Not a directory"]
    assert (tmp_path / "report.txt").read_text(encoding="utf-8") == "notes\n"
