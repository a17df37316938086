"""The ``dask`` backend against real Dask clusters: a LocalCluster, and a `dask scheduler` with a
`dask worker` started as separate processes; and `modelrunner exec`, which runs an attempt away
from the server, as a subprocess.

The platform runs in process behind a real HTTP server (uvicorn on a free port), since the
attempts post their progress to it from the Dask workers."""

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

import distributed
import psutil
import pytest

from modelrunner.artifacts.store import ArtifactStore
from modelrunner.execution import checkpoints
from modelrunner.execution.job import AttemptJob, JobInput
from modelrunner.execution.remote import RemoteJob
from modelrunner.settings import Settings
from modelrunner.spec.model_version import snapshot
from tests.conftest import TESTS, free_port, wait_for_run
from tests.integration.runs_api import process_gone, wait_until
from tests.integration.served import Served, read_pids

pytestmark = [
    # Dask's own shutdown chatter (closed comms, a nanny restarting a killed worker) is not ours.
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*Port .* is already in use.*:UserWarning"),
]


# --- clusters -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[str]:
    """A Dask LocalCluster with one worker process; its scheduler's address."""
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=4, processes=True, dashboard_address=None, scheduler_port=0
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


class DaskProcesses:
    """`dask scheduler` and `dask worker` as subprocesses, as an operator starts them."""

    def __init__(self, folder: Path) -> None:
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.folder = folder
        self.scheduler = self._start("scheduler", ["scheduler", "--port", self.address.rsplit(":", 1)[1]])
        self.worker = self._start("worker", ["worker", self.address, "--nthreads", "4", "--name", "w1"])
        self.wait_for_workers(1)

    def _start(self, name: str, arguments: list[str]) -> subprocess.Popen[bytes]:
        log = (self.folder / f"dask-{name}.log").open("ab")
        command = [str(Path(sys.executable).parent / "dask"), *arguments, "--no-dashboard"]
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def worker_pids(self) -> set[int]:
        """The worker processes under the `dask worker` nanny."""
        return {child.pid for child in psutil.Process(self.worker.pid).children(recursive=True)}

    def wait_for_workers(self, count: int, timeout: float = 30) -> None:
        with distributed.Client(self.address, timeout=timeout, set_as_default=False) as client:
            client.wait_for_workers(count, timeout=timeout)

    def stop(self) -> None:
        for process in (self.worker, self.scheduler):
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def dask_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskProcesses]:
    processes = DaskProcesses(tmp_path_factory.mktemp("dask"))
    try:
        yield processes
    finally:
        processes.stop()


# --- the platform -------------------------------------------------------------------------------


def declare_dask(workspace: Path, scheduler: str, extra: str = "") -> None:
    (workspace / "modelrunner.yaml").write_text(
        f"name: dask-workspace\nbackends:\n  cluster:\n    type: dask\n    scheduler: {scheduler}\n{extra}"
        "default_backend: cluster\n",
        encoding="utf-8",
    )


@pytest.fixture
def on_local_cluster(settings: Settings, workspace: Path, local_cluster: str) -> Iterator[Served]:
    declare_dask(workspace, local_cluster)
    served = Served(settings)
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def on_dask_processes(settings: Settings, workspace: Path, dask_processes: DaskProcesses) -> Iterator[Served]:
    declare_dask(workspace, dask_processes.address)
    served = Served(settings)
    try:
        yield served
    finally:
        served.stop()


# --- (a) a LocalCluster -------------------------------------------------------------------------


def test_a_run_on_a_local_cluster_succeeds_with_progress_and_outputs(on_local_cluster: Served) -> None:
    served = on_local_cluster
    run_id = served.submit("sleeper", {"seconds": 1.5, "tag": "dask-local"})

    run = wait_for_run(served.http.get, run_id)

    assert run["status"] == "succeeded", run
    assert run["backend"] == "cluster"
    [attempt] = run["attempts"]
    assert attempt["status"] == "succeeded"
    assert attempt["exit_code"] == 0
    [output] = run["outputs"]
    assert output["path"] == "done.txt"
    download = served.http.get(f"/api/v1/runs/{run_id}/outputs/done.txt")
    assert download.status_code == 200
    assert download.text == "slept 1.5\n"
    progress = [e["data"] for e in served.events(run_id) if e["type"] == "run.progress"]
    assert progress, "no progress reached the server from the Dask worker"
    assert any(p["message"].startswith("step ") for p in progress), progress
    statuses = [e["data"]["to"] for e in served.events(run_id) if e["type"] == "run.status"]
    assert statuses == ["queued", "starting", "running", "succeeded"]
    # The worker's log of the attempt is the run's log on the server once it has ended.
    logged = served.http.get(f"/api/v1/runs/{run_id}/logs").text
    assert "::progress:: 0.9000 step 10 of 10" in logged and "::progress:: 1.0000 done" in logged


def test_servers_with_databases_of_their_own_share_a_cluster(
    on_local_cluster: Served, settings: Settings, tmp_path: Path
) -> None:
    # Each server's first attempt has id 1: their tasks and events must not be taken for each other's.
    first = on_local_cluster
    long_run = first.submit("sleeper", {"seconds": 60, "tag": "first server"})
    wait_until(lambda: first.http.get(f"/api/v1/runs/{long_run}").json()["status"] == "running", 20, "running")
    other = settings.model_copy(
        update={"database_url": f"sqlite:///{tmp_path / 'other.db'}", "data_dir": tmp_path / "other-state"}
    )
    second = Served(other)
    try:
        short_run = wait_for_run(second.http.get, second.submit("sleeper", {"seconds": 0.5, "tag": "second server"}))
    finally:
        second.stop()

    assert [(a["number"], a["status"]) for a in short_run["attempts"]] == [(1, "succeeded")], short_run
    assert first.http.get(f"/api/v1/runs/{long_run}").json()["status"] == "running"  # untouched
    assert first.http.post(f"/api/v1/runs/{long_run}/cancel").status_code == 200
    assert wait_for_run(first.http.get, long_run)["status"] == "cancelled"
    wait_until(
        lambda: [a["status"] for a in first.http.get(f"/api/v1/runs/{long_run}").json()["attempts"]] == ["cancelled"],
        15,
        "the first server's attempt to end cancelled",
    )


def test_a_failing_model_on_dask_fails_as_it_would_locally(on_local_cluster: Served) -> None:
    run = wait_for_run(on_local_cluster.http.get, on_local_cluster.submit("failing", {}))

    assert run["status"] == "failed"
    assert "exit status" in run["error"]


def test_the_log_of_a_run_on_dask_can_be_followed_while_it_runs(on_local_cluster: Served) -> None:
    served = on_local_cluster
    run_id = served.submit("sleeper", {"seconds": 60, "tag": "followed"})  # step 2 begins after 6 s

    def log_so_far() -> str:
        return served.http.get(f"/api/v1/runs/{run_id}/logs").text

    wait_until(lambda: "step 1 of 10" in log_so_far(), 15, "the first line of the log on the server")
    assert served.http.get(f"/api/v1/runs/{run_id}").json()["status"] == "running"
    assert served.http.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200
    assert wait_for_run(served.http.get, run_id)["status"] == "cancelled"
    # The whole log, copied from the artifact store once the attempt ended, repeats no line.
    assert log_so_far().count("step 1 of 10") == 1


def test_a_checkpoint_reaches_the_retry_on_dask_and_is_removed_once_the_run_ends(on_local_cluster: Served) -> None:
    run = wait_for_run(on_local_cluster.http.get, on_local_cluster.submit("flaky", {"key": "dask"}))

    # The first attempt failed after leaving its checkpoint; the second found it and succeeded.
    assert [a["status"] for a in run["attempts"]] == ["failed", "succeeded"], run
    artifacts = on_local_cluster.platform.artifacts
    left = checkpoints.stored_key(run["id"], 1)
    wait_until(lambda: not artifacts.exists(left), 20, "the ended run's checkpoint to leave the artifact store")


# --- (c) cancel ---------------------------------------------------------------------------------


def test_cancel_stops_the_model_on_the_worker_within_the_grace_period(
    on_local_cluster: Served, settings: Settings, tmp_path: Path
) -> None:
    served = on_local_cluster
    counter = tmp_path / "pids"
    # The model ignores SIGTERM: only the SIGKILL after the grace period ends it.
    run_id = served.submit("sleeper", {"seconds": 60, "counter": str(counter), "ignore_sigterm": True})
    [pid] = wait_until(lambda: read_pids(counter), 20, "the model started on the worker")
    assert not process_gone(pid)
    wait_until(lambda: served.http.get(f"/api/v1/runs/{run_id}").json()["status"] == "running", 10, "running")

    response = served.http.post(f"/api/v1/runs/{run_id}/cancel")
    asked = time.monotonic()

    assert response.status_code == 200, response.text
    wait_until(lambda: process_gone(pid), settings.grace_seconds + 5, f"model process {pid} gone")
    assert time.monotonic() - asked >= settings.grace_seconds * 0.9  # SIGTERM alone did not end it
    run = wait_for_run(served.http.get, run_id)
    assert run["status"] == "cancelled"

    def attempt_ended() -> dict[str, Any] | None:
        [attempt] = served.http.get(f"/api/v1/runs/{run_id}").json()["attempts"]
        return attempt if attempt["status"] == "cancelled" else None

    wait_until(attempt_ended, settings.grace_seconds + 15, "the attempt recorded as cancelled")
    assert read_pids(counter) == [pid]  # nothing ran it again


# --- (b) and (d) a `dask scheduler` with a `dask worker` ----------------------------------------


def test_a_run_on_a_separate_scheduler_and_worker_succeeds(on_dask_processes: Served) -> None:
    served = on_dask_processes
    run = wait_for_run(served.http.get, served.submit("noop", {"n": 7}))

    assert run["status"] == "succeeded", run
    assert [o["path"] for o in run["outputs"]] == ["params.json"]
    assert json.loads(served.http.get(f"/api/v1/runs/{run['id']}/outputs/params.json").text) == {"n": 7, "label": ""}


def test_a_killed_worker_loses_the_attempt_and_the_engine_retries_it(
    on_dask_processes: Served, dask_processes: DaskProcesses, tmp_path: Path
) -> None:
    served = on_dask_processes
    counter = tmp_path / "pids"
    run_id = served.submit("sleeper", {"seconds": 4, "counter": str(counter), "tag": "killed"})
    [first] = wait_until(lambda: read_pids(counter), 20, "the model started on the worker")
    wait_until(lambda: served.http.get(f"/api/v1/runs/{run_id}").json()["status"] == "running", 10, "running")
    # The model runs under its supervisor, forked by the supervisor service the worker started.
    supervisors, worker = psutil.Process(first).parents()[:2], psutil.Process(first).parents()[2]
    assert all("supervisor.py" in " ".join(process.cmdline()) for process in supervisors)
    assert worker.pid in dask_processes.worker_pids()

    worker.kill()  # SIGKILL: the worker cannot tell anyone; its nanny starts a new one

    # The model dies with its worker at once, rather than running on unobserved.
    wait_until(lambda: process_gone(first), 5, f"model process {first} gone with its worker")
    run = wait_for_run(served.http.get, run_id, timeout=60)
    assert run["status"] == "succeeded", run
    attempts = run["attempts"]
    assert [a["status"] for a in attempts] == ["lost", "succeeded"], attempts
    assert "worker" in attempts[0]["error"]
    statuses = [e["data"]["to"] for e in served.events(run_id) if e["type"] == "run.status"]
    assert statuses == ["queued", "starting", "running", "lost", "queued", "starting", "running", "succeeded"]
    pids = read_pids(counter)
    assert len(pids) == 2 and pids[0] == first
    assert all(process_gone(pid) for pid in pids)  # nothing is left running
    dask_processes.wait_for_workers(1)


# --- a scheduler that cannot be reached ----------------------------------------------------------


def test_an_unreachable_scheduler_keeps_runs_queued_and_the_server_up(
    settings: Settings, workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    declare_dask(workspace, f"tcp://127.0.0.1:{free_port()}")
    served = Served(settings)
    try:
        run_id = served.submit("noop", {"n": 1})
        # Each try to connect waits a few seconds for an answer before it gives up.
        wait_until(lambda: "cannot reach the Dask scheduler" in caplog.text, 15, "the log says so")
        run = served.http.get(f"/api/v1/runs/{run_id}").json()
        assert run["status"] == "queued"
        assert run["attempts"] == []
        assert served.http.get("/api/v1/healthz").status_code == 200
        problem = served.platform.backends["cluster"].health()
        assert problem is not None and "cannot reach the Dask scheduler" in problem
    finally:
        served.stop()


# --- (e) `modelrunner exec` as a subprocess -------------------------------------------------------


class ProgressSink:
    """A tiny HTTP server that records progress posts (path, token, body)."""

    def __init__(self) -> None:
        received: list[tuple[str, str, dict[str, Any]]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                received.append((self.path, self.headers.get("Authorization", ""), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.received = received
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def exec_job(tmp_path: Path, job: AttemptJob, store: ArtifactStore) -> subprocess.CompletedProcess[str]:
    job_file = tmp_path / "job.json"
    job_file.write_text(RemoteJob(job, store.url, grace_seconds=1).to_json(), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELRUNNER_")}
    return subprocess.run(
        [sys.executable, "-m", "modelrunner", "exec", "--job", str(job_file)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def sleeper_job(store: ArtifactStore, callback_url: str | None, **overrides: Any) -> AttemptJob:
    uri = store.put_bytes("models/sleeper/v1.tar.gz", snapshot(TESTS / "workspace" / "sleeper"))
    values: dict[str, Any] = {
        "run_id": 41,
        "attempt_id": 7,
        "attempt_number": 1,
        "model_name": "sleeper",
        "model_version": "v1",
        "command": ["python", "sleeper.py"],
        "params": {"seconds": 0.3, "tag": "", "counter": "", "ignore_sigterm": False},
        "snapshot_uri": uri,
        "declared_outputs": ("done.txt",),
        "callback_url": callback_url,
        "callback_token": "mr_attempt_secret",
    }
    return AttemptJob(**(values | overrides))


def test_exec_runs_a_job_file_and_prints_its_outcome(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "artifacts"))
    sink = ProgressSink()
    try:
        job = sleeper_job(store, f"{sink.url}/api/v1/attempts/7")
        done = exec_job(tmp_path, job, store)
    finally:
        sink.close()

    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["status"] == "succeeded"
    assert outcome["exit_code"] == 0
    [output] = outcome["outputs"]
    assert output["path"] == "done.txt"
    assert output["uri"] == store.uri("runs/41/attempts/1/outputs/done.txt")
    assert store.get_bytes(output["uri"]) == b"slept 0.3\n"
    assert sink.received, "no progress was posted"
    assert {(path, token) for path, token, _ in sink.received} == {
        ("/api/v1/attempts/7/progress", "Bearer mr_attempt_secret")
    }
    assert sink.received[-1][2] == {"fraction": 1.0, "message": "done"}
    # What a backend that only hears "the job ended" reads: the outcome and the log, in the store.
    assert json.loads(store.get_bytes(store.uri("runs/41/attempts/1/outcome.json"))) == outcome
    assert b"::progress:: 1.0000 done" in store.get_bytes(store.uri("runs/41/attempts/1/attempt.log"))


def test_exec_succeeds_when_the_server_cannot_be_reached_for_progress(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "artifacts"))
    job = sleeper_job(store, f"http://127.0.0.1:{free_port()}/api/v1/attempts/7")

    done = exec_job(tmp_path, job, store)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "succeeded"
    assert "Traceback" not in done.stderr


def test_exec_fails_the_attempt_naming_an_input_the_artifact_store_lacks(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "artifacts"))
    job = sleeper_job(store, None, inputs=(JobInput("cases", "casecounts", "abc123"),))

    done = exec_job(tmp_path, job, store)

    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["status"] == "failed"
    assert "input 'cases'" in outcome["error"]
    assert "dataset 'casecounts'" in outcome["error"]


def test_exec_reads_inputs_kept_in_the_artifact_store(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "artifacts"))
    store.put_bytes("datasets/casecounts/abc123/cases.csv", b"day,cases\n1,3\n")
    model = tmp_path / "reader"
    model.mkdir()
    (model / "reader.py").write_text(
        "import os, shutil\n"
        "shutil.copy(os.path.join(os.environ['MODELRUNNER_INPUTS'], 'cases', 'cases.csv'),"
        " os.path.join(os.environ['MODELRUNNER_OUTPUTS'], 'copy.csv'))\n",
        encoding="utf-8",
    )
    uri = store.put_bytes("models/reader/v1.tar.gz", snapshot(model))
    job = sleeper_job(
        store,
        None,
        snapshot_uri=uri,
        command=["python", "reader.py"],
        declared_outputs=("copy.csv",),
        inputs=(JobInput("cases", "casecounts", "abc123"),),
    )

    done = exec_job(tmp_path, job, store)

    outcome = json.loads(done.stdout)
    assert outcome["status"] == "succeeded", outcome
    assert store.get_bytes(outcome["outputs"][0]["uri"]) == b"day,cases\n1,3\n"


def test_exec_without_a_usable_job_says_why_without_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "job.json").write_text('{"run_id": 1}', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELRUNNER_")}
    for arguments, message in (
        (["--job", str(tmp_path / "missing.json")], "cannot read the job description"),
        (["--job", str(tmp_path / "job.json")], "lacks the field"),
        (["--job", "{not json"], "not valid JSON"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "modelrunner", "exec", *arguments], capture_output=True, text=True, env=env
        )
        assert done.returncode == 1
        assert message in done.stderr
        assert "Traceback" not in done.stderr


def test_exec_takes_the_job_from_the_environment_and_stops_on_sigterm(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "artifacts"))
    counter = tmp_path / "pids"
    job = sleeper_job(store, None, params={"seconds": 60, "tag": "", "counter": str(counter), "ignore_sigterm": False})
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELRUNNER_")}
    env["MODELRUNNER_JOB"] = RemoteJob(job, store.url, grace_seconds=1).to_json()
    process = subprocess.Popen(
        [sys.executable, "-m", "modelrunner", "exec"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    [pid] = wait_until(lambda: read_pids(counter), 20, "the model started")

    process.terminate()
    stdout, stderr = process.communicate(timeout=10)

    assert process.returncode == 0, stderr
    assert json.loads(stdout)["status"] == "preempted"  # SIGTERM from outside: the machine is taken back
    assert process_gone(pid)
