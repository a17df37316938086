"""The ``worker`` backend with real processes: a ``modelrunner serve`` and several ``modelrunner
worker`` processes on loopback, which reach the server only over HTTP. Workers are killed, cut
off (SIGSTOP past their lease) and cancelled mid-run."""

from __future__ import annotations

import os
import pwd
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from modelrunner.store import queries
from modelrunner.store.database import Database
from tests.conftest import Server
from tests.integration.runs_api import process_gone, read_pid, wait_until, write_model

LEASE = 3.0

# Attempt 1 runs long, later attempts briefly; each leaves its pid and its callback token.
TWICE = """command: ["python", "twice.py"]
params:
  type: object
  properties:
    marks: {type: string}
outputs:
  - path: attempt.txt
"""
TWICE_PY = """import json, os, time
from pathlib import Path
attempt = os.environ["MODELRUNNER_ATTEMPT"]
marks = Path(json.load(open(os.environ["MODELRUNNER_PARAMS"]))["marks"])
(marks / f"pid-{attempt}").write_text(str(os.getpid()))
(marks / f"token-{attempt}").write_text(os.environ["MODELRUNNER_CALLBACK_TOKEN"])
time.sleep(30 if attempt == "1" else 0.5)
Path(os.environ["MODELRUNNER_OUTPUTS"], "attempt.txt").write_text(attempt)
"""


@pytest.fixture
def workspace(workspace: Path) -> Path:
    spec = yaml.safe_load((workspace / "modelrunner.yaml").read_text())
    spec.update(backends={"pool": {"type": "worker", "lease_seconds": LEASE}}, default_backend="pool")
    (workspace / "modelrunner.yaml").write_text(yaml.safe_dump(spec))
    write_model(workspace, "twice", TWICE, {"twice.py": TWICE_PY})
    return workspace


class Workers:
    """``modelrunner worker`` processes of the test's server; stopped (SIGTERM) at the end."""

    def __init__(self, server: Server, folder: Path) -> None:
        self._server = server
        self._folder = folder
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = self._folder / f"worker-{len(self.processes)}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "modelrunner", "worker", "--pool", "pool", *extra],
                env=env or self._server.env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        process.log = log  # type: ignore[attr-defined]
        self.processes.append(process)
        return process

    def log_of(self, process: subprocess.Popen[bytes]) -> str:
        return Path(process.log).read_text(errors="replace")  # type: ignore[attr-defined]

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def workers(server: Server, tmp_path: Path) -> Iterator[Workers]:
    started = Workers(server, tmp_path)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as client:
        yield client


def submit(api: httpx.Client, model: str, params: dict[str, Any]) -> int:
    response = api.post(f"/api/v1/models/{model}/runs", json={"params": params})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def final(api: httpx.Client, run_id: int, timeout: float = 30) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        run: dict[str, Any] = api.get(f"/api/v1/runs/{run_id}").json()
        return run if run["status"] in {"succeeded", "failed", "timed_out", "cancelled"} else None

    return wait_until(ended, timeout, f"run {run_id} ends")


def runs_under(pid: int, worker: int) -> bool:
    """Whether ``pid`` runs below ``worker`` (a model runs under its supervisor, under the worker)."""
    return worker in [parent.pid for parent in psutil.Process(pid).parents()]


def pid_in(path: Path, timeout: float = 20) -> int:
    return wait_until(lambda: read_pid(path), timeout, f"the model writes {path.name}")


def test_runs_succeed_on_several_workers_with_outputs_logs_and_progress(
    api: httpx.Client, server: Server, workers: Workers, tmp_path: Path
) -> None:
    started = [workers.start() for _ in range(3)]
    counters = [tmp_path / f"count-{n}" for n in range(3)]
    runs = [submit(api, "sleeper", {"seconds": 1.5, "tag": str(n), "counter": str(counters[n])}) for n in range(3)]
    for counter in counters:
        pid_in(counter)

    for run_id in runs:
        run = final(api, run_id)
        assert run["status"] == "succeeded", run
        assert [a["status"] for a in run["attempts"]] == ["succeeded"]
        assert [a["backend"] for a in run["attempts"]] == ["pool"]
        assert api.get(f"/api/v1/runs/{run_id}/outputs/done.txt").text == "slept 1.5\n"
        assert "step 6 of 10" in api.get(f"/api/v1/runs/{run_id}/logs").text
        events = api.get(f"/api/v1/runs/{run_id}/events").json()["items"]
        assert any(e["type"] == "run.progress" for e in events)
        assert [e["data"]["to"] for e in events if e["type"] == "run.status"] == [
            "queued",
            "starting",
            "running",
            "succeeded",
        ]
    # Each attempt's handle names the worker that ran it ("host:pid"): the runs were spread.
    database = Database(server.env["MODELRUNNER_DATABASE_URL"])
    try:
        with database.read() as session:
            ran_on = {queries.attempts_of(session, run_id)[0].handle["worker"] for run_id in runs}
            attempt_ids = {run_id: queries.attempts_of(session, run_id)[0].id for run_id in runs}
    finally:
        database.dispose()
    assert len(ran_on) >= 2, "the runs should be spread over the workers"
    assert {int(name.rsplit(":", 1)[1]) for name in ran_on} <= {p.pid for p in started}
    # The workers' lines about an attempt name its run, model and pool, as the server's do.
    logged = "".join(workers.log_of(process) for process in started) + server.log_path.read_text()
    for run_id, attempt_id in attempt_ids.items():
        about = rf"\[run {run_id}, attempt {attempt_id}, model sleeper, backend pool\]$"
        assert re.search(rf"INFO modelrunner\.worker: attempt {attempt_id}: succeeded {about}", logged, re.M)
        handed = rf"INFO modelrunner\.backends\.worker: attempt {attempt_id} of run {run_id} handed to worker"
        assert re.search(rf"{handed} \S+ {about}", logged, re.M)


def test_a_killed_worker_loses_its_attempt_and_another_worker_runs_it(
    api: httpx.Client, workers: Workers, tmp_path: Path
) -> None:
    first = workers.start()
    counter = tmp_path / "count"
    run_id = submit(api, "sleeper", {"seconds": 3, "counter": str(counter)})
    model = pid_in(counter)
    assert runs_under(model, first.pid)
    second = workers.start()
    first.kill()  # SIGKILL: no goodbye; its model dies with it
    wait_until(lambda: process_gone(model), 5, "the killed worker's model dies with it")

    run = final(api, run_id, timeout=30)
    assert run["status"] == "succeeded", run
    assert [a["status"] for a in run["attempts"]] == ["lost", "succeeded"]
    assert "no heartbeat" in run["attempts"][0]["error"]
    assert len(counter.read_text().split()) == 2, "the model ran once on each worker"
    assert second.poll() is None


def test_a_worker_cut_off_past_its_lease_cannot_overwrite_the_newer_attempt(
    api: httpx.Client, server: Server, workers: Workers, tmp_path: Path
) -> None:
    cut_off = workers.start()
    run_id = submit(api, "twice", {"marks": str(tmp_path)})
    model = pid_in(tmp_path / "pid-1")
    assert runs_under(model, cut_off.pid)
    token = (tmp_path / "token-1").read_text()
    os.kill(cut_off.pid, signal.SIGSTOP)  # a network cut: it neither hears nor is heard
    workers.start()

    run = final(api, run_id, timeout=30)
    assert run["status"] == "succeeded", run
    assert [a["status"] for a in run["attempts"]] == ["lost", "succeeded"]
    assert api.get(f"/api/v1/runs/{run_id}/outputs/attempt.txt").text == "2"
    assert not process_gone(model), "the cut-off worker's model still runs"

    # Its first attempt's token is spent: a late result changes nothing.
    attempt_id = token.split("_")[1]
    headers = {"Authorization": f"Bearer {token}"}
    late = {"status": "succeeded", "exit_code": 0, "outputs": []}
    refused = httpx.post(f"{server.url}/api/v1/attempts/{attempt_id}/finish", json=late, headers=headers)
    assert refused.status_code == 401 and "spent" in refused.json()["detail"]
    beat = httpx.post(f"{server.url}/api/v1/attempts/{attempt_id}/heartbeat", json={}, headers=headers)
    assert beat.status_code == 401

    os.kill(cut_off.pid, signal.SIGCONT)  # back: told the attempt is gone, it stops its model
    wait_until(lambda: process_gone(model), LEASE + 5, "the late worker stops its model")
    wait_until(lambda: "dropped" in workers.log_of(cut_off), 10, "the late worker drops its result")
    run = api.get(f"/api/v1/runs/{run_id}").json()
    assert run["status"] == "succeeded"
    assert [a["status"] for a in run["attempts"]] == ["lost", "succeeded"]
    assert api.get(f"/api/v1/runs/{run_id}/outputs/attempt.txt").text == "2"
    assert cut_off.poll() is None, "the worker goes on serving the pool"


def test_cancel_reaches_the_worker_and_stops_its_model(api: httpx.Client, workers: Workers, tmp_path: Path) -> None:
    workers.start()
    counter = tmp_path / "count"
    run_id = submit(api, "sleeper", {"seconds": 30, "counter": str(counter)})
    model = pid_in(counter)
    # The log is streamed while the model runs.
    wait_until(lambda: "step 1 of 10" in api.get(f"/api/v1/runs/{run_id}/logs").text, 5, "the log streams")
    assert api.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200
    wait_until(lambda: process_gone(model), LEASE / 3 + 1 + 3, "the cancelled model's process ends")
    run = final(api, run_id)
    assert run["status"] == "cancelled"
    wait_until(
        lambda: api.get(f"/api/v1/runs/{run_id}").json()["attempts"][0]["status"] == "cancelled",
        LEASE + 3,
        "the attempt ends cancelled",
    )


def test_a_stopped_worker_gives_its_attempt_back(api: httpx.Client, workers: Workers, tmp_path: Path) -> None:
    leaving = workers.start()
    counter = tmp_path / "count"
    run_id = submit(api, "sleeper", {"seconds": 2, "counter": str(counter)})
    model = pid_in(counter)
    leaving.terminate()
    assert leaving.wait(timeout=10) == 0
    assert process_gone(model)
    workers.start()
    run = final(api, run_id)
    assert run["status"] == "succeeded", run
    assert [a["status"] for a in run["attempts"]] == ["preempted", "succeeded"]


@pytest.mark.parametrize(
    ("token", "expected"),
    [("mrt_1_nope", "refused the worker's token"), (None, "group 'workers'")],
)
def test_a_worker_the_server_refuses_says_why_and_exits_1(
    server: Server, workers: Workers, token: str | None, expected: str
) -> None:
    env = dict(server.env)
    if token is None:  # a real user, but neither a site admin nor in the group `workers`
        from tests.identities import add_user

        database = Database(server.env["MODELRUNNER_DATABASE_URL"])
        try:
            token = add_user(database, "walter")
        finally:
            database.dispose()
    env["MODELRUNNER_TOKEN"] = token
    process = workers.start(env=env)
    assert process.wait(timeout=20) == 1
    output = workers.log_of(process)
    assert "error:" in output and expected in output, output
    assert "Traceback" not in output


def test_an_unknown_pool_is_named(server: Server, workers: Workers) -> None:
    process = workers.start("--pool", "elsewhere")
    assert process.wait(timeout=20) == 1
    output = workers.log_of(process)
    assert "no worker pool 'elsewhere'" in output and "it runs: pool" in output, output


def test_a_worker_makes_its_workdir_and_refuses_one_that_cannot_be(
    api: httpx.Client, workers: Workers, tmp_path: Path
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    refused = workers.start("--workdir", str(a_file / "work"))
    assert refused.wait(timeout=20) == 1
    output = workers.log_of(refused)
    assert f"cannot use {a_file / 'work'} as the workdir" in output and "Traceback" not in output, output

    workdir = tmp_path / "not" / "yet"
    workers.start("--workdir", str(workdir))
    counter = tmp_path / "count"
    run = final(api, submit(api, "sleeper", {"seconds": 0.1, "counter": str(counter)}))
    assert run["status"] == "succeeded", run
    assert workdir.is_dir()


WHOAMI = """command: ["sh", "whoami.sh"]
outputs:
  - path: id.txt
"""


def test_a_worker_runs_models_as_the_user_it_is_told(
    server: Server, workers: Workers, api: httpx.Client, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        workers.start("--run-as", "nobody")
        assert wait_until(lambda: workers.processes[0].poll(), 20, "the worker to refuse") == 1
        assert "only a server running as root can run models as 'nobody'" in workers.log_of(workers.processes[0])
        return
    model = write_model(
        Path(server.env["MODELRUNNER_WORKSPACE"]),
        "whoami",
        WHOAMI,
        {"whoami.sh": 'id > "$MODELRUNNER_OUTPUTS/id.txt"\n'},
    )
    (model / "whoami.sh").chmod(0o755)
    closed = Path(tempfile.mkdtemp())  # mode 0700: nobody cannot enter it
    try:
        refused = workers.start("--run-as", "nobody", "--workdir", str(closed))
        assert wait_until(lambda: refused.poll(), 20, "the worker to refuse a workdir nobody can reach") == 1
    finally:
        closed.rmdir()
    assert f"cannot pass through {closed} " in workers.log_of(refused)

    workers.start("--run-as", "nobody")
    run = final(api, submit(api, "whoami", {}))
    assert run["status"] == "succeeded", run
    nobody = pwd.getpwnam("nobody")
    assert f"uid={nobody.pw_uid}(nobody)" in api.get(f"/api/v1/runs/{run['id']}/outputs/id.txt").text


def test_a_workers_model_sees_only_the_variables_the_workspace_passes(
    server: Server, workers: Workers, api: httpx.Client
) -> None:
    workspace = Path(server.env["MODELRUNNER_WORKSPACE"])
    spec = yaml.safe_load((workspace / "modelrunner.yaml").read_text())
    (workspace / "modelrunner.yaml").write_text(yaml.safe_dump({**spec, "model_environment": ["MR_TEST_PASSED"]}))
    write_model(workspace, "envdump", 'command: ["sh", "-c", "env > $MODELRUNNER_OUTPUTS/env.txt"]\n')
    workers.start(env={**server.env, "MR_TEST_PASSED": "passed", "MR_TEST_WORKER_SECRET": "kept-by-the-worker"})

    run = final(api, submit(api, "envdump", {}))

    assert run["status"] == "succeeded", run
    environment = api.get(f"/api/v1/runs/{run['id']}/outputs/env.txt").text
    assert "MR_TEST_PASSED=passed" in environment.splitlines()
    assert "kept-by-the-worker" not in environment
    assert "MODELRUNNER_TOKEN" not in environment and server.env["MODELRUNNER_TOKEN"] not in environment
