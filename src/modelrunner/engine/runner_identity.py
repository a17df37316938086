"""Who holds an attempt: a runner id names the host and the process, so a successor on the same
host can tell that the holder is gone without waiting for its lease to expire."""

from __future__ import annotations

import os
import socket

import psutil

HOST = socket.gethostname()


def this_runner_id() -> str:
    return f"{HOST}:{os.getpid()}:{psutil.Process().create_time():.3f}"


def is_dead_runner(runner_id: str) -> bool:
    """True only when the runner ran on this host and its process no longer exists."""
    parts = runner_id.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != HOST:
        return False
    pid, created = int(parts[1]), float(parts[2])
    try:
        return abs(psutil.Process(pid).create_time() - created) > 0.01
    except psutil.NoSuchProcess:
        return True
