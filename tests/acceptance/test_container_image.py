"""The platform's container image (Containerfile) and compose file (deploy/compose.yaml), built
and run with podman as an operator would: the image serves the API and runs models as its
unprivileged user; the compose file's server on PostgreSQL runs a model through its worker and
backs its store up.

Needs root, podman, runc and debootstrap (`apt-get install podman runc debootstrap`). The first run
makes the base image with deploy/base-image.sh (one to two minutes); later runs find it. Each
test prints what it measured (pytest -s shows it)."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import container_images
from tests.conftest import FINAL, REPO, free_port
from tests.container_images import BASE_IMAGE, NEEDS_PODMAN, PodmanBase, build
from tests.container_images import run as _run

# Tags of the tests' own: an operator's `latest` images on the same machine stay as they are.
IMAGE = "localhost/modelrunner:test"
POSTGRES_IMAGE = "localhost/modelrunner-postgres:test"
MODEL_USER = "modelrunner-models"
podman_base = container_images.podman_base  # the session's fixture: the base image and podman's settings

# A model that says who runs it and whether it can read the server's store and keys.
WHOAMI = """\
import json
import os
import pwd
from pathlib import Path

def readable(path):
    try:
        Path(path).read_bytes()
    except PermissionError:
        return False
    except FileNotFoundError:
        return None
    return True

Path(os.environ["MODELRUNNER_OUTPUTS"], "whoami.json").write_text(json.dumps({
    "user": pwd.getpwuid(os.getuid()).pw_name,
    "uid": os.getuid(),
    "store_readable": readable("/var/lib/modelrunner/modelrunner.db"),
    "session_key_readable": readable("/var/lib/modelrunner/session.key"),
}))
"""

WHOAMI_YAML = """\
name: whoami
title: Who runs me
description: Says which user runs the model and what of the server's files it can read.
command: ["python", "whoami.py"]
outputs:
  - {path: whoami.json, description: the model's user and what it could read}
"""

pytestmark = [
    pytest.mark.store_free,
    # Both tests share the images one fixture builds: on one xdist worker, it builds them once.
    pytest.mark.xdist_group("container_image"),
    pytest.mark.timeout(900),
    NEEDS_PODMAN,
]


@dataclass(frozen=True)
class Images:
    env: dict[str, str]  # the environment podman and podman-compose need here
    platform_build_seconds: float
    postgres_build_seconds: float
    base_seconds: float | None  # None: the base image was there already


@pytest.fixture(scope="module")
def images(podman_base: PodmanBase, tmp_path_factory: pytest.TempPathFactory) -> Images:
    """The base image (made once per machine), then the platform's image from a wheel of this
    checkout and the PostgreSQL image, as the README tells an operator to build them."""
    folder = tmp_path_factory.mktemp("images")
    env = podman_base.env
    base_seconds = podman_base.base_seconds
    # The build context an operator's checkout gives after `pip wheel --no-deps . -w dist/`
    # (.containerignore leaves out the rest), without writing into this checkout.
    context = folder / "context"
    (context / "dist").mkdir(parents=True)
    shutil.copy(REPO / "pyproject.toml", context)
    # From a copy: pip builds in the source tree, where a parallel test's `pip install .` may be building too.
    source = folder / "source"
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(source), "-w", str(context / "dist")], env)
    platform_seconds = build(REPO / "Containerfile", context, IMAGE, env)
    postgres_seconds = build(
        REPO / "deploy" / "postgres" / "Containerfile", REPO / "deploy" / "postgres", POSTGRES_IMAGE, env
    )
    return Images(env, platform_seconds, postgres_seconds, base_seconds)


def _workspace(folder: Path, config: str) -> Path:
    (folder / "whoami").mkdir(parents=True)
    (folder / "whoami" / "model.yaml").write_text(WHOAMI_YAML)
    (folder / "whoami" / "whoami.py").write_text(WHOAMI)
    (folder / "modelrunner.yaml").write_text(config)
    # The model user inside the container must be able to read the workspace a test mounts.
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


def _wait_healthy(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/v1/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not healthy after {timeout}s")


def _run_model(url: str, token: str) -> tuple[dict[str, Any], dict[str, Any], float]:
    """Submit a run of `whoami` and wait for its end: the run, its whoami.json, and the seconds
    from submit to its end."""
    headers = {"Authorization": f"Bearer {token}"}
    started = time.monotonic()
    created = httpx.post(f"{url}/api/v1/models/whoami/runs", json={"params": {}}, headers=headers, timeout=10)
    assert created.status_code in (200, 201), created.text
    run_url = f"{url}/api/v1/runs/{created.json()['id']}"
    while (run := httpx.get(run_url, headers=headers, timeout=10).json())["status"] not in FINAL:
        assert time.monotonic() - started < 120, f"run still {run['status']} after 120 s"
        time.sleep(0.2)
    seconds = time.monotonic() - started
    assert run["status"] == "succeeded", httpx.get(f"{run_url}/logs", headers=headers, timeout=10).text
    found = httpx.get(f"{run_url}/outputs/whoami.json", headers=headers, timeout=10)
    assert found.status_code == 200, found.text
    return run, found.json(), seconds


def _image_size(name: str, env: dict[str, str]) -> int:
    return int(_run(["podman", "image", "inspect", name, "--format", "{{.Size}}"], env).strip())


def test_the_image_serves_and_runs_models_as_its_unprivileged_user(images: Images, tmp_path: Path) -> None:
    workspace = _workspace(tmp_path / "workspace", "name: image-test\n")
    name = f"modelrunner-test-{secrets.token_hex(4)}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    try:
        _run(
            [
                "podman", "run", "--detach", "--name", name, "--publish", f"127.0.0.1:{port}:8000",
                "--volume", f"{workspace}:/workspace:ro", IMAGE,
            ],
            images.env,
        )  # fmt: skip
        _wait_healthy(url, timeout=60)
        start_seconds = time.monotonic() - started
        # The image's own HEALTHCHECK (podman runs it on demand where no systemd timer does).
        _run(["podman", "healthcheck", "run", name], images.env)
        token = _run(
            ["podman", "exec", name, "modelrunner", "tokens", "create", "--user", "admin", "--quiet"], images.env
        )

        run, whoami, run_seconds = _run_model(url, token.strip())
    finally:
        subprocess.run(["podman", "rm", "--force", "--volumes", name], env=images.env, capture_output=True)

    assert run["backend"] == "local"
    assert whoami["user"] == MODEL_USER and whoami["uid"] != 0
    # The model cannot read the server's store or keys, which lie in the same volume.
    assert whoami["store_readable"] is False and whoami["session_key_readable"] is False
    size = _image_size(IMAGE, images.env)
    assert size < 800e6, f"the image grew to {size / 1e6:.0f} MB"
    base = f"made in {images.base_seconds:.0f} s" if images.base_seconds is not None else "cached"
    print(
        f"\nimage {size / 1e6:.0f} MB; base {_image_size(BASE_IMAGE, images.env) / 1e6:.0f} MB ({base});"
        f" build {images.platform_build_seconds:.1f} s; start to healthy {start_seconds:.2f} s;"
        f" a model run {run_seconds:.2f} s"
    )


def test_the_compose_file_runs_a_model_on_its_worker_against_postgresql(images: Images, tmp_path: Path) -> None:
    workspace = _workspace(
        tmp_path / "workspace",
        "name: compose-test\nbackends:\n  pool: {type: worker, slots: 1, lease_seconds: 30}\ndefault_backend: pool\n",
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    project = f"modelrunner-test-{secrets.token_hex(4)}"
    env = {
        **images.env,
        "POSTGRES_PASSWORD": secrets.token_hex(16),
        "MODELRUNNER_WORKSPACE_DIR": str(workspace),
        "MODELRUNNER_PUBLISH": f"127.0.0.1:{port}",
        "MODELRUNNER_IMAGE": IMAGE,
        "MODELRUNNER_POSTGRES_IMAGE": POSTGRES_IMAGE,
    }
    compose = [
        sys.executable,
        "-m",
        "podman_compose",
        "--project-name",
        project,
        "--file",
        str(REPO / "deploy" / "compose.yaml"),
    ]

    def inside(service: str, *command: str) -> str:
        return _run([*compose, "exec", "-T", service, *command], env).strip()

    volumes_before = _run(["podman", "volume", "ls", "--quiet"], env).split()
    started = time.monotonic()
    try:
        # As the README's steps go: the platform (and PostgreSQL), the worker's token, the rest.
        _run([*compose, "up", "--detach", "platform"], env)
        _wait_healthy(url, timeout=120)
        up_seconds = time.monotonic() - started
        inside("platform", "modelrunner", "groups", "add", "workers")
        inside("platform", "modelrunner", "users", "add", "worker", "--group", "workers")
        env["MODELRUNNER_WORKER_TOKEN"] = inside(
            "platform", "modelrunner", "tokens", "create", "--user", "worker", "--quiet"
        )
        token = inside("platform", "modelrunner", "tokens", "create", "--user", "admin", "--quiet")
        _run([*compose, "up", "--detach"], env)

        run, whoami, run_seconds = _run_model(url, token)

        assert run["backend"] == "pool" and run["attempts"][0]["backend"] == "pool"
        assert whoami["user"] == MODEL_USER and whoami["uid"] != 0
        stored = inside(
            "postgres", "psql", "--username=postgres", "--dbname=modelrunner", "--tuples-only", "--no-align",
            "--command", f"SELECT status FROM runs WHERE id = {int(run['id'])}",
        )  # fmt: skip
        assert stored == "succeeded"
        # A backup of the PostgreSQL store from inside the platform (pg_dump is in the image).
        inside("platform", "modelrunner", "db", "backup", "/var/lib/modelrunner/backup.tar.gz")
        assert int(inside("platform", "stat", "--format=%s", "/var/lib/modelrunner/backup.tar.gz")) > 0
    finally:
        stopping = time.monotonic()
        _run([*compose, "down", "--volumes"], env)
        down_seconds = time.monotonic() - stopping
    label = f"label=io.podman.compose.project={project}"
    assert _run(["podman", "ps", "--all", "--quiet", "--filter", label], env) == ""
    # down --volumes leaves no volume behind, not even an unnamed one
    assert set(_run(["podman", "volume", "ls", "--quiet"], env).split()) <= set(volumes_before)
    print(
        f"\ncompose: up to healthy {up_seconds:.1f} s; a model run through the worker {run_seconds:.2f} s;"
        f" down {down_seconds:.1f} s; all {time.monotonic() - started:.1f} s;"
        f" PostgreSQL image {_image_size(POSTGRES_IMAGE, env) / 1e6:.0f} MB"
        f" (built in {images.postgres_build_seconds:.1f} s)"
    )
