"""A real modelrunner server in a subprocess, configured only through ``MODELRUNNER_*`` variables
(as ``tests/conftest.py`` starts it), on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

HERE = Path(__file__).resolve().parent
LAUNCHER = HERE / "launcher.py"
SERVE = [sys.executable, "-m", "modelrunner", "serve"]


def server_command(choice: str) -> list[str]:
    """``modelrunner serve`` when it exists (``auto``) or is asked for, else the uvicorn launcher."""
    if choice == "launcher":
        return [sys.executable, str(LAUNCHER)]
    if choice == "serve" or _serve_exists():
        return SERVE
    return [sys.executable, str(LAUNCHER)]


def _serve_exists() -> bool:
    try:
        probe = subprocess.run([*SERVE, "--help"], capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        return False
    return probe.returncode == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``start()`` returns once GET /api/v1/healthz answers 200; ``stop()`` is SIGTERM, then SIGKILL."""

    def __init__(self, command: list[str], settings: dict[str, str], log_path: Path) -> None:
        self.command = command
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MODELRUNNER_")}
        self.env.update({f"MODELRUNNER_{k.upper()}": v for k, v in settings.items()})
        self.env.update(MODELRUNNER_HOST="127.0.0.1", MODELRUNNER_PORT=str(self.port))
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.token = ""  # the first site admin's, once started

    def start(self, timeout: float = 60) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited at start:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/api/v1/healthz", timeout=2).status_code == 200:
                    self.token = self.token or self._admin_token()
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def _admin_token(self) -> str:
        """A token of the site admin the first start created, as an administrator gets one."""
        command = [sys.executable, "-m", "modelrunner", "tokens", "create", "--user", "admin", "--quiet"]
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"could not create a token: {done.stderr}")
        return done.stdout.strip()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    @property
    def pid(self) -> int:
        """The server process (not the models it runs)."""
        assert self.process is not None
        return self.process.pid

    def rss(self) -> int:
        """Resident set size of the server process, bytes."""
        return int(psutil.Process(self.pid).memory_info().rss)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""
