"""The ``kubernetes`` backend against an API server that cannot be reached: a kubeconfig pointing
at a port of this machine where nothing listens, read by the real client, alone and through a
real ``modelrunner serve``.

No Kubernetes API server can run here (there is no kube-apiserver to install, nor a container
engine to run one in), so what a cluster does with the Jobs is tested in the unit tests, from
statuses as the API returns them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from modelrunner.artifacts.logs import LogStore
from modelrunner.artifacts.store import ArtifactStore
from modelrunner.backends.base import BackendUnavailable, RemoteServices
from modelrunner.backends.kubernetes import KubernetesBackend
from modelrunner.engine.states import AttemptStatus
from modelrunner.execution.job import AttemptJob
from modelrunner.spec.kubernetes_spec import KubernetesBackendSpec
from modelrunner.spec.model_spec import Resources
from tests.conftest import Server, free_port
from tests.integration.runs_api import wait_until

TOKEN = "k8s-token-that-must-never-show-5b3c91"


def write_kubeconfig(path: Path, server: str) -> Path:
    """A kubeconfig as ``kubectl config`` writes one: a cluster, a user with a bearer token, a
    context tying them together."""
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: {server}
    insecure-skip-tls-verify: true
users:
- name: modelrunner
  user:
    token: {TOKEN}
contexts:
- name: lab
  context:
    cluster: lab
    user: modelrunner
    namespace: models
current-context: lab
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def nowhere(tmp_path: Path) -> tuple[Path, str]:
    """A kubeconfig of an API server that cannot be reached, and the server's address."""
    address = f"https://127.0.0.1:{free_port()}"
    return write_kubeconfig(tmp_path / "kubeconfig", address), address


def backend_of(tmp_path: Path, **options: object) -> KubernetesBackend:
    spec = KubernetesBackendSpec.model_validate(
        {"type": "kubernetes", "image": "registry.example.org/models:1.2", "namespace": "models"} | options
    )
    services = RemoteServices(ArtifactStore(str(tmp_path / "artifacts")), LogStore(tmp_path / "logs"), 1, lambda: None)
    return KubernetesBackend("k8s", spec, services)


def test_an_unreachable_api_server_is_named_within_seconds_and_nothing_is_taken(
    tmp_path: Path, nowhere: tuple[Path, str], caplog: pytest.LogCaptureFixture
) -> None:
    kubeconfig, address = nowhere
    backend = backend_of(tmp_path, kubeconfig=str(kubeconfig))
    try:
        started = time.monotonic()
        problem = backend.health()
        assert time.monotonic() - started < 5

        assert problem is not None
        assert problem.startswith(f"cannot reach the Kubernetes API server {address}: cannot connect")
        assert "Connection refused" in problem
        assert backend.free_slots() == 0  # runs wait in the queue
        assert backend.poll([]) == []
        job = AttemptJob(7, 42, 1, "noop", "v1", ["python", "noop.py"], {}, "file:///snapshot", resources=Resources())
        with pytest.raises(BackendUnavailable, match=f"cannot reach the Kubernetes API server {address}"):
            backend.submit(job)
        # A cancel from a handle of a server that died before the attempt ran: no error, soon over.
        started = time.monotonic()
        backend.cancel({"host": "old-server", "attempt_id": 41, "run_id": 6, "attempt": 1}, AttemptStatus.LOST)
        assert time.monotonic() - started < 5
        assert "attempt 41: its Kubernetes Job is not deleted yet" in caplog.text
    finally:
        backend.close()
    assert TOKEN not in caplog.text + problem


def test_a_kubeconfig_that_cannot_be_loaded_is_named_by_health(tmp_path: Path, nowhere: tuple[Path, str]) -> None:
    missing = backend_of(tmp_path, kubeconfig=str(tmp_path / "missing"))
    no_context = backend_of(tmp_path, kubeconfig=str(nowhere[0]), context="production")

    assert f"cannot load the Kubernetes configuration from the kubeconfig {tmp_path / 'missing'}" in str(
        missing.health()
    )
    assert "production" in str(no_context.health())
    assert missing.free_slots() == 0 and no_context.free_slots() == 0
    with pytest.raises(BackendUnavailable, match="cannot load the Kubernetes configuration"):
        missing.submit(AttemptJob(7, 42, 1, "noop", "v1", ["python", "noop.py"], {}, "file:///snapshot"))


def test_a_run_for_an_unreachable_cluster_stays_queued_and_the_server_says_why(
    server_env: dict[str, str], workspace: Path, tmp_path: Path, nowhere: tuple[Path, str]
) -> None:
    kubeconfig, address = nowhere
    (workspace / "modelrunner.yaml").write_text(
        "name: k8s-workspace\n"
        "backends:\n"
        f"  cluster: {{type: kubernetes, image: 'registry.example.org/models:1.2', kubeconfig: '{kubeconfig}'}}\n"
        "default_backend: cluster\n",
        encoding="utf-8",
    )
    server = Server(server_env, tmp_path / "server.log")
    server.env["MODELRUNNER_SERVER"] = server.url
    server.start()
    try:

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            done = subprocess.run(
                [sys.executable, "-m", "modelrunner", *args], env=server.env, capture_output=True, text=True, timeout=60
            )
            assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
            return done

        submitted = cli("run", "noop", "-p", "n=1", "--json")
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        run_id = json.loads(submitted.stdout)["id"]

        wait_until(lambda: "cannot reach the Kubernetes API server" in server.log_path.read_text(), 20, "logged")
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
            # Polled over and over (poll_seconds 0.2), and never handed to the backend.
            with pytest.raises(AssertionError):
                wait_until(lambda: http.get(f"/api/v1/runs/{run_id}").json()["status"] != "queued", 2, "claimed")
            run = http.get(f"/api/v1/runs/{run_id}").json()
            assert (run["status"], run["attempts"], run["backend"]) == ("queued", [], "cluster")
            assert http.get("/api/v1/healthz").status_code == 200

            [listed] = http.get("/api/v1/backends").json()
            assert (listed["name"], listed["type"], listed["healthy"], listed["queued"]) == (
                "cluster",
                "kubernetes",
                False,
                1,
            )
            assert listed["problem"].startswith(f"cannot reach the Kubernetes API server {address}: cannot connect")

        shown = cli("backends", "list")
        assert shown.returncode == 0, shown.stderr
        rows = [[cell for cell in line.split() if cell != "│"] for line in shown.stdout.splitlines()]
        assert ["cluster", "kubernetes", "down", "0", "1"] in rows, shown.stdout
        said = " ".join((shown.stdout + shown.stderr).split())
        assert f"cluster: cannot reach the Kubernetes API server {address}" in said

        assert cli("runs", "cancel", str(run_id)).returncode == 0  # a queued run needs no cluster to cancel
        assert TOKEN not in server.log_path.read_text() + shown.stdout + shown.stderr + json.dumps(listed)
    finally:
        server.stop()
