"""A server killed with SIGKILL mid-flight and started again loses no run, runs nothing twice
after it succeeded, and stops the model processes it orphaned before retrying them."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import psutil

from tests.conftest import FINAL, Server, wait_for_run


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_sigkill_and_restart_finishes_every_run(server: Server, tmp_path: Path) -> None:
    pidfile = tmp_path / "forker.pids"
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
        finished = http.post("/api/v1/models/noop/runs", json={"params": {"n": 1}}).json()
        wait_for_run(http.get, finished["id"])
        # forker holds a slot with a child process; a sleeper holds the other; more wait in the queue.
        forker = http.post(
            "/api/v1/models/forker/runs", json={"params": {"pidfile": str(pidfile), "seconds": 3}}
        ).json()
        sleepers = [
            http.post("/api/v1/models/sleeper/runs", json={"params": {"seconds": 1.5, "tag": str(i)}}).json()
            for i in range(4)
        ]
        _wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 20, "the forker to start")
        orphan_pids = [int(p) for p in pidfile.read_text().split()]

        server.kill()
        # The model and its child die with the server: nothing runs twice after the restart.
        _wait_for(lambda: not any(_alive(pid) for pid in orphan_pids), 5, "the model to die with the server")
        pidfile.unlink()

        server.start()
        runs = [wait_for_run(http.get, r["id"], timeout=60) for r in [forker, *sleepers]]
        again = http.get(f"/api/v1/runs/{finished['id']}").json()
        listed = http.get("/api/v1/runs", params={"limit": 100}).json()["items"]

    assert [r["status"] for r in runs] == ["succeeded"] * len(runs), [(r["error"], r["attempts"]) for r in runs]
    assert all(r["status"] in FINAL for r in listed) and len(listed) == 1 + len(runs)
    forker_run = runs[0]
    assert [a["status"] for a in forker_run["attempts"]] == ["lost", "succeeded"]
    # The run that had succeeded before the crash was not executed again.
    assert again["status"] == "succeeded" and len(again["attempts"]) == 1
    # Each sleeper succeeded exactly once: one recorded success per run, none published twice.
    for run in runs[1:]:
        assert [a["status"] for a in run["attempts"]].count("succeeded") == 1


def test_graceful_shutdown_leaves_no_process_and_requeues_without_spending_retries(
    server: Server, tmp_path: Path
) -> None:
    counter = tmp_path / "pids.txt"
    params = {"seconds": 2, "ignore_sigterm": True, "counter": str(counter)}
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
        run = http.post("/api/v1/models/sleeper/runs", json={"params": params}).json()
        _wait_for(lambda: counter.exists() and counter.read_text().strip(), 20, "the model to start")
        first_pid = int(counter.read_text().split()[0])

        server.stop()  # SIGTERM: the model ignores it and must be killed after the grace period
        assert not _alive(first_pid), "the server exited but left its model running"

        server.start()
        done = wait_for_run(http.get, run["id"], timeout=60)
    assert done["status"] == "succeeded"
    assert [a["status"] for a in done["attempts"]] == ["cancelled", "succeeded"]
    assert "shut down" in (done["attempts"][0]["error"] or "")


COUNTING = """\
import json, os, pathlib, signal, sys, time
checkpoint = pathlib.Path(os.environ["MODELRUNNER_CHECKPOINT"]) / "step"
first = int(checkpoint.read_text()) if checkpoint.exists() else 0
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
for step in range(first, 40):
    written = checkpoint.with_name("step.new")
    written.write_text(str(step))
    os.replace(written, checkpoint)  # whole, as a model must: a stop may come mid-write
    time.sleep(0.1)
(pathlib.Path(os.environ["MODELRUNNER_OUTPUTS"]) / "steps.json").write_text(json.dumps({"first": first}))
"""


def test_a_run_stopped_by_a_shutdown_resumes_from_its_checkpoint(
    server: Server, server_env: dict[str, str], tmp_path: Path
) -> None:
    folder = Path(server_env["MODELRUNNER_WORKSPACE"]) / "counting"
    folder.mkdir()
    (folder / "model.yaml").write_text(
        'name: counting\ncommand: ["python", "count.py"]\noutputs: [{path: steps.json}]\n'
    )
    (folder / "count.py").write_text(COUNTING)
    checkpoints = Path(server_env["MODELRUNNER_DATA_DIR"])
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
        run = http.post("/api/v1/models/counting/runs", json={"params": {}}).json()
        step_files = lambda: list(checkpoints.rglob("checkpoints/*/step"))  # noqa: E731
        _wait_for(lambda: any(f.read_text().strip() not in ("", "0", "1", "2") for f in step_files()), 20, "step 3")

        server.stop()
        reached = int(step_files()[0].read_text())
        server.start()
        done = wait_for_run(http.get, run["id"], timeout=60)
        steps = http.get(f"/api/v1/runs/{run['id']}/outputs/steps.json").json()

    assert done["status"] == "succeeded"
    assert [a["status"] for a in done["attempts"]] == ["cancelled", "succeeded"]
    assert steps["first"] == reached >= 3  # the second attempt went on where the first stopped
    assert step_files() == []  # the run is over: its checkpoint is gone


def test_a_shutdown_does_not_wait_for_open_run_pages_or_workers_waiting_for_work(
    server_env: dict[str, str], tmp_path: Path
) -> None:
    config = Path(server_env["MODELRUNNER_WORKSPACE"]) / "modelrunner.yaml"
    config.write_text(
        config.read_text()
        + "backends:\n  local: {type: local}\n  pool: {type: worker}\n"
        + "access:\n  anonymous: [{models: sleeper, allow: view}]\n"
    )
    server = Server(server_env, tmp_path / "server.log")
    server.start()
    try:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
            run = http.post("/api/v1/models/sleeper/runs", json={"params": {"seconds": 60}}).json()
            _wait_for(lambda: http.get(f"/api/v1/runs/{run['id']}").json()["status"] == "running", 20, "running")
        # A browser on the run page (its stream lasts up to 5 minutes) and a worker asking for
        # work (a claim waits up to 20 s for some).
        followed = threading.Event()
        claimed: list[int] = []

        def follow() -> None:
            with httpx.stream("GET", f"{server.url}/runs/{run['id']}/stream", timeout=None) as stream:
                for line in stream.iter_lines():
                    if line.startswith("event: progress"):
                        followed.set()

        def claim() -> None:
            answer = httpx.post(
                f"{server.url}/api/v1/pools/pool/claim", json={"worker": "w1"}, headers=server.headers, timeout=60
            )
            claimed.append(answer.status_code)

        threads = [threading.Thread(target=work, daemon=True) for work in (follow, claim)]
        for thread in threads:
            thread.start()
        assert followed.wait(10), "the run page's stream did not start"
        time.sleep(0.5)  # the claim is waiting

        asked = time.monotonic()
        assert server.process is not None
        server.process.terminate()
        server.process.wait(timeout=120)
        took = time.monotonic() - asked

        assert took < 10, f"the shutdown waited {took:.0f} s for open requests"
        assert "Application shutdown complete" in server.log_path.read_text()  # the platform stopped its runs
        for thread in threads:
            thread.join(10)
        assert claimed == [204]  # the worker heard "no work" and asks the next server
    finally:
        server.stop()
