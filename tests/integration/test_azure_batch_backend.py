"""The ``azure-batch`` backend against an Azure Batch account it cannot reach: a closed port on
loopback, and a port that takes connections but never answers. Nothing here reaches Azure, no
emulator of Batch exists, and the SDK is not mocked: these are the real client's calls failing
as they fail when Azure is out of reach (tests/unit/test_azure_batch_backend.py covers the tasks
the backend sends and how it reads Batch's answers).

The shared key is a random one in an environment variable, as in production: it must appear in
no answer, error, log line or handle."""

from __future__ import annotations

import base64
import json
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelrunner.artifacts.logs import LogStore
from modelrunner.artifacts.store import ArtifactStore
from modelrunner.backends.azure_batch import AzureBatchBackend
from modelrunner.backends.base import BackendUnavailable, RemoteServices
from modelrunner.engine.states import AttemptStatus
from modelrunner.errors import ModelrunnerError
from modelrunner.execution.job import AttemptJob
from modelrunner.spec.azure_batch_spec import AzureBatchBackendSpec
from modelrunner.spec.model_spec import Resources
from tests.conftest import Server, free_port
from tests.integration.runs_api import wait_until

KEY_ENV = "MR_TEST_AZURE_BATCH_KEY"


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    """A shared key of the form Azure gives (base64 of 64 bytes), in the environment."""
    value = base64.b64encode(secrets.token_bytes(64)).decode()
    monkeypatch.setenv(KEY_ENV, value)
    return value


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that takes TCP connections (the kernel's backlog) and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


def backend_at(url: str, tmp_path: Path, **options: Any) -> AzureBatchBackend:
    config = AzureBatchBackendSpec(
        type="azure-batch",
        account_url=url,
        pool_id="lowpri",
        **({"account_name": "models", "account_key_env": KEY_ENV} | options),
    )
    services = RemoteServices(ArtifactStore(str(tmp_path / "artifacts")), LogStore(tmp_path / "logs"), 1, lambda: None)
    return AzureBatchBackend("spot", config, services)


def job() -> AttemptJob:
    return AttemptJob(
        run_id=1,
        attempt_id=3,
        attempt_number=1,
        model_name="noop",
        model_version="v1",
        command=["python", "noop.py"],
        params={},
        snapshot_uri="file:///nowhere.tar.gz",
        resources=Resources(timeout=60),
    )


def test_health_names_an_unreachable_account_within_seconds(key: str, tmp_path: Path) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    backend = backend_at(url, tmp_path)
    try:
        started = time.monotonic()
        problem = backend.health()
        took = time.monotonic() - started
    finally:
        backend.close()

    assert problem is not None and problem.startswith(f"cannot reach Azure Batch at {url}: "), problem
    assert "refused" in problem.lower(), problem
    assert took < 5, took
    assert key not in problem


def test_health_gives_up_on_a_silent_endpoint_within_seconds(key: str, silent_port: int, tmp_path: Path) -> None:
    url = f"https://127.0.0.1:{silent_port}"
    backend = backend_at(url, tmp_path)
    try:
        started = time.monotonic()
        problem = backend.health()
        took = time.monotonic() - started
    finally:
        backend.close()

    assert problem is not None and problem.startswith(f"cannot reach Azure Batch at {url}: "), problem
    assert took < 8, took
    assert key not in problem


def test_submit_poll_and_cancel_on_an_unreachable_account(
    key: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    backend = backend_at(url, tmp_path)
    handle = {"backend": "azure-batch", "job_id": "modelrunner-spot", "task_id": "modelrunner-attempt-3"}
    handle |= {"attempt_id": 3, "run_id": 1, "attempt": 1}
    try:
        with pytest.raises(BackendUnavailable) as refused:  # the run waits in the queue
            backend.submit(job())
        assert refused.value.message.startswith(f"Azure Batch at {url} did not take the task: "), refused.value
        assert backend.free_slots() == 10  # nothing was launched

        assert backend.poll([handle]) == []  # asked again at the next poll
        backend.cancel(handle, AttemptStatus.CANCELLED)  # the engine retries a cancel it still wants
        backend.cancel({"attempt_id": 3, "run_id": 1, "attempt": 1}, AttemptStatus.LOST)  # a handle of a dead server
    finally:
        backend.close()

    assert "cannot list the tasks of Batch job modelrunner-spot" in caplog.text
    assert "attempt 3: Azure Batch did not terminate its task" in caplog.text
    assert key not in caplog.text and key not in refused.value.message


def test_a_missing_or_wrong_key_is_named_not_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    monkeypatch.delenv(KEY_ENV, raising=False)
    backend = backend_at(url, tmp_path)

    assert backend.health() == (
        f"the environment variable {KEY_ENV}, which should hold the key of the Azure Batch account models, "
        f"is not set on the server (nor {KEY_ENV}_FILE, naming a file that holds it)"
    )
    with pytest.raises(ModelrunnerError, match=f"the environment variable {KEY_ENV}"):
        backend.submit(job())
    monkeypatch.setenv(KEY_ENV, "not a key at all")
    assert backend.health() == f"the environment variable {KEY_ENV} does not hold an Azure Batch account key (base64)"
    backend.close()


def declare(workspace: Path, url: str) -> None:
    (workspace / "modelrunner.yaml").write_text(
        f"name: azure-workspace\nbackends:\n  spot:\n    type: azure-batch\n    account_url: {url}\n"
        f"    pool_id: lowpri\n    account_name: models\n    account_key_env: {KEY_ENV}\n"
        "default_backend: spot\n",
        encoding="utf-8",
    )


def test_a_run_waits_in_the_queue_while_the_account_cannot_be_reached_and_the_server_stays_up(
    key: str, workspace: Path, server_env: dict[str, str], tmp_path: Path
) -> None:
    url = f"https://127.0.0.1:{free_port()}"
    declare(workspace, url)
    server = Server({**server_env, KEY_ENV: key}, tmp_path / "server.log")
    server.env["MODELRUNNER_SERVER"] = server.url
    server.start()
    answers: list[str] = []
    try:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as api:
            submitted = api.post("/api/v1/models/noop/runs", json={"params": {"n": 1}})
            assert submitted.status_code == 201, submitted.text
            run_id = submitted.json()["id"]

            # The launch could not reach Azure: the attempt is given up without spending a retry
            # and the run waits in the queue until Azure Batch answers again.
            def put_back() -> dict[str, Any] | None:
                run: dict[str, Any] = api.get(f"/api/v1/runs/{run_id}").json()
                given_up = run["attempts"] and run["attempts"][0]["status"] == "cancelled"
                return run if given_up and run["status"] == "queued" else None

            run = wait_until(put_back, 60, "the run back in the queue")
            events = api.get(f"/api/v1/runs/{run_id}/events")
            backends = api.get("/api/v1/backends")
            healthz = api.get("/api/v1/healthz")
            answers += [submitted.text, json.dumps(run), events.text, backends.text]

            attempt = run["attempts"][0]
            assert (attempt["status"], attempt["backend"], attempt["started_at"]) == ("cancelled", "spot", None)
            assert attempt["error"].startswith(f"not launched: Azure Batch at {url} did not take the task: "), attempt
            statuses = [e["data"]["to"] for e in events.json()["items"] if e["type"] == "run.status"]
            assert statuses[:3] == ["queued", "starting", "queued"], statuses
            assert "failed" not in statuses
            assert healthz.status_code == 200  # the server stays up
            [spot] = backends.json()
            assert (spot["name"], spot["type"], spot["served"], spot["healthy"]) == ("spot", "azure-batch", True, False)
            assert spot["problem"].startswith(f"cannot reach Azure Batch at {url}: "), spot

        listed = subprocess.run(
            [sys.executable, "-m", "modelrunner", "backends", "list"],
            env=server.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        answers += [listed.stdout, listed.stderr]
        assert listed.returncode == 0, listed.stderr
        assert "azure-batch" in listed.stdout and "down" in listed.stdout, listed.stdout
        assert f"spot: cannot reach Azure Batch at {url}" in " ".join(listed.stderr.split()), listed.stderr
    finally:
        server.stop()

    log = server.log_path.read_text()
    assert f"backend spot: Azure Batch at {url} did not take the task" in log
    assert "its runs wait in the queue until it answers" in log
    for text in [log, *answers]:
        assert key not in text
