"""Real containers in tests: podman configured for these machines, and the base image every test
image starts FROM, made once per machine from Debian's packages (deploy/base-image.sh).

Needs root, podman, runc and debootstrap (`apt-get install podman runc debootstrap catatonit`).
A test module uses the session fixture ``podman_base`` (import it) and the marker ``NEEDS_PODMAN``."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

BASE_IMAGE = "localhost/modelrunner-base:trixie"

# On these machines crun cannot start containers (cgroups in hybrid mode, no raising of
# RLIMIT_NOFILE): runc with cgroupfs and no default ulimits can.
CONTAINERS_CONF = """\
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
"""

NEEDS_PODMAN = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("podman", "runc", "debootstrap")) or os.geteuid() != 0,
    reason="needs root and podman, runc and debootstrap (apt-get install podman runc debootstrap)",
)

# Tests on several xdist workers may find the base image missing at once: one makes it.
_BASE_LOCK = Path("/tmp/modelrunner-test-base-image.lock")


@dataclass(frozen=True)
class PodmanBase:
    env: dict[str, str]  # the environment podman (and podman-compose) need here
    conf: Path  # the containers.conf it names (CONTAINERS_CONF)
    base_seconds: float | None  # None: the base image was there already


def run(command: list[str], env: dict[str, str], timeout: float = 300, **kwargs: Any) -> str:
    """Run ``command``; its stdout, or AssertionError with its output when it fails."""
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, **kwargs)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def image_id(name: str, env: dict[str, str]) -> str | None:
    found = subprocess.run(["podman", "image", "inspect", name, "--format", "{{.Id}}"], env=env, capture_output=True)
    return found.stdout.decode().strip() if found.returncode == 0 else None


def build(containerfile: Path, context: Path, tag: str, env: dict[str, str]) -> float:
    """Seconds to build ``tag``; the image it was before goes (its layers shared with the new one stay)."""
    before = image_id(tag, env)
    started = time.monotonic()
    run(
        [
            "podman", "build", "--format", "docker", "--network", "host",
            # pip inside the build trusts this machine's authorities (PIP_CERT in the Containerfile)
            "-v", "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro",
            "-f", str(containerfile), "-t", tag, str(context),
        ],
        env,
        timeout=600,
    )  # fmt: skip
    seconds = time.monotonic() - started
    if before is not None and before != image_id(tag, env):
        subprocess.run(["podman", "image", "rm", before], env=env, capture_output=True)
    return seconds


@pytest.fixture(scope="session")
def podman_base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanBase]:
    """podman's configuration for this machine, and the base image (made if missing)."""
    folder = tmp_path_factory.mktemp("podman")
    conf = folder / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    base_seconds = None
    with _BASE_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if subprocess.run(["podman", "image", "exists", BASE_IMAGE], env=env).returncode != 0:
            started = time.monotonic()
            run([str(REPO / "deploy" / "base-image.sh"), BASE_IMAGE], env, timeout=600)
            base_seconds = time.monotonic() - started
    yield PodmanBase(env, conf, base_seconds)
