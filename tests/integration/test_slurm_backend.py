"""The ``slurm`` backend against a real single-node Slurm cluster (tests/slurm_cluster.py:
munged, slurmctld and slurmd started for this module), with the platform in process behind a
real HTTP server, since the jobs post their progress to it.

Skipped when Slurm is not installed (failed instead under MODELRUNNER_TEST_NO_SKIPS=1)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from modelrunner.backends.base import RemoteServices
from modelrunner.backends.slurm import SlurmBackend
from modelrunner.engine.states import AttemptStatus
from modelrunner.settings import Settings
from modelrunner.spec.backend_spec import SlurmBackendSpec
from modelrunner.store.tables import AttemptRow
from tests.conftest import wait_for_run
from tests.integration.runs_api import process_gone, wait_until
from tests.integration.served import Served, read_pids
from tests.slurm_cluster import PARTITION, SlurmCluster, running_cluster

pytestmark = [
    # One cluster per machine at a time: keep these tests on one xdist worker (--dist loadgroup).
    pytest.mark.xdist_group("slurm"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


@pytest.fixture(scope="module")
def cluster() -> Iterator[SlurmCluster]:
    with running_cluster() as started:
        yield started


def declare_slurm(workspace: Path, python: str = sys.executable) -> None:
    (workspace / "modelrunner.yaml").write_text(
        "name: slurm-workspace\n"
        "backends:\n"
        "  hpc:\n"
        "    type: slurm\n"
        f"    partition: {PARTITION}\n"
        f"    python: {python}\n"
        "default_backend: hpc\n",
        encoding="utf-8",
    )


def add_sleeper_variant(workspace: Path, name: str, extra: str) -> None:
    """A copy of the sleeper model with more lines in its model.yaml (resources, retries)."""
    folder = workspace / name
    folder.mkdir()
    (folder / "sleeper.py").write_text((workspace / "sleeper" / "sleeper.py").read_text())
    spec = (workspace / "sleeper" / "model.yaml").read_text().replace("name: sleeper", f"name: {name}")
    spec = spec.replace("resources: {timeout: 60}\n", "")
    (folder / "model.yaml").write_text(spec + extra, encoding="utf-8")


@pytest.fixture
def served(settings: Settings, workspace: Path, cluster: SlurmCluster) -> Iterator[Served]:
    declare_slurm(workspace)
    add_sleeper_variant(workspace, "sized", "resources: {cpu: 1, memory: 300Mi, timeout: 90}\n")
    add_sleeper_variant(workspace, "short", "resources: {timeout: 2}\n")
    add_sleeper_variant(workspace, "fragile", "resources: {timeout: 60}\nretries: {lost: 0}\n")
    running = Served(settings)
    try:
        yield running
    finally:
        running.stop()


def slurm_job(served: Served, run_id: int) -> str:
    """The Slurm job id of the run's latest attempt, once it started."""

    def found() -> str | None:
        with served.platform.database.read() as session:
            rows = session.scalars(select(AttemptRow).where(AttemptRow.run_id == run_id)).all()
        handles = [row.handle for row in sorted(rows, key=lambda row: row.number) if row.handle]
        return str(handles[-1]["job_id"]) if handles and "job_id" in handles[-1] else None

    return wait_until(found, 30, f"run {run_id} has a Slurm job")


def job_active(cluster: SlurmCluster, job_id: str) -> bool:
    done = cluster.run("squeue", f"--jobs={job_id}", "--noheader", "--format=%T")
    return done.returncode == 0 and bool(done.stdout.strip())


def status_of(served: Served, run_id: int) -> str:
    status: str = served.http.get(f"/api/v1/runs/{run_id}").json()["status"]
    return status


def test_a_run_succeeds_with_outputs_and_log_and_slurm_gets_its_resources(
    served: Served, cluster: SlurmCluster
) -> None:
    run_id = served.submit("sized", {"seconds": 3, "tag": "slurm"})
    job_id = slurm_job(served, run_id)
    job = cluster.job(job_id)

    assert job["JobName"].startswith("modelrunner-")
    assert job["Partition"] == PARTITION
    assert job["NumCPUs"] == "1"
    assert job["MinMemoryNode"] == "300M"
    assert job["TimeLimit"] == "00:02:00"  # 90 s and the grace period, in whole minutes
    assert job["Requeue"] == "0"  # the engine decides about another attempt, not Slurm
    run = wait_for_run(served.http.get, run_id, timeout=60)
    assert run["status"] == "succeeded", run
    assert run["backend"] == "hpc"
    [attempt] = run["attempts"]
    assert attempt["exit_code"] == 0
    assert served.http.get(f"/api/v1/runs/{run_id}/outputs/done.txt").text == "slept 3\n"
    progress = [e["data"] for e in served.events(run_id) if e["type"] == "run.progress"]
    assert progress, "no progress reached the server from the Slurm job"
    assert "::progress:: 1.0000 done" in served.http.get(f"/api/v1/runs/{run_id}/logs").text
    assert not job_active(cluster, job_id)
    [backend] = served.http.get("/api/v1/backends").json()
    assert backend["type"] == "slurm" and backend["healthy"], backend


def test_cancel_scancels_the_job_and_the_model_is_gone_within_the_grace_period(
    served: Served, cluster: SlurmCluster, settings: Settings, tmp_path: Path
) -> None:
    counter = tmp_path / "pids"
    # The model ignores SIGTERM: only a SIGKILL ends it.
    run_id = served.submit("sleeper", {"seconds": 120, "counter": str(counter), "ignore_sigterm": True})
    [pid] = wait_until(lambda: read_pids(counter), 30, "the model started in its Slurm job")
    job_id = slurm_job(served, run_id)
    wait_until(lambda: status_of(served, run_id) == "running", 10, "running")

    assert served.http.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200

    wait_until(lambda: process_gone(pid), settings.grace_seconds + 5, f"model process {pid} gone")
    wait_until(lambda: not job_active(cluster, job_id), settings.grace_seconds + 10, "the job left squeue")
    assert cluster.job(job_id)["JobState"] == "CANCELLED"
    run = wait_for_run(served.http.get, run_id)
    assert run["status"] == "cancelled"
    wait_until(
        lambda: served.http.get(f"/api/v1/runs/{run_id}").json()["attempts"][0]["status"] == "cancelled",
        15,
        "the attempt recorded as cancelled",
    )
    assert read_pids(counter) == [pid]  # nothing ran it again


def test_a_timeout_ends_the_run_timed_out_and_the_job_is_gone(
    served: Served, cluster: SlurmCluster, tmp_path: Path
) -> None:
    counter = tmp_path / "pids"
    run_id = served.submit("short", {"seconds": 60, "counter": str(counter)})
    job_id = slurm_job(served, run_id)

    run = wait_for_run(served.http.get, run_id, timeout=45)

    assert run["status"] == "timed_out", run
    wait_until(lambda: not job_active(cluster, job_id), 10, "the job left squeue")
    assert all(process_gone(pid) for pid in read_pids(counter))


def test_a_failing_model_fails_with_its_exit_status(served: Served) -> None:
    run = wait_for_run(served.http.get, served.submit("failing", {}), timeout=60)

    assert run["status"] == "failed"
    assert [a["exit_code"] for a in run["attempts"]] == [3, 3]  # `retries: 1` for failures
    assert "exit status" in run["error"]
    assert "about to fail" in served.http.get(f"/api/v1/runs/{run['id']}/logs").text


def test_a_job_cancelled_outside_modelrunner_is_reported_lost(
    served: Served, cluster: SlurmCluster, tmp_path: Path
) -> None:
    counter = tmp_path / "pids"
    run_id = served.submit("fragile", {"seconds": 60, "counter": str(counter)})
    [pid] = wait_until(lambda: read_pids(counter), 30, "the model started")
    job_id = slurm_job(served, run_id)

    assert cluster.run("scancel", job_id).returncode == 0

    run = wait_for_run(served.http.get, run_id, timeout=30)
    [attempt] = run["attempts"]
    assert attempt["status"] == "lost", attempt
    assert "cancelled outside modelrunner" in attempt["error"]
    assert run["status"] == "failed"  # `retries: {lost: 0}`
    assert process_gone(pid)


def test_a_stopped_controller_makes_health_say_so_and_keeps_runs_queued(served: Served, cluster: SlurmCluster) -> None:
    backend = served.platform.backends["hpc"]
    wait_until(lambda: backend.free_slots() > 0, 15, "the backend takes work")
    cluster.stop_controller()
    try:
        problem = backend.health()
        assert problem is not None and "Slurm controller" in problem, problem
        wait_until(lambda: backend.free_slots() == 0, 15, "the backend takes no more work")
        run_id = served.submit("noop", {"n": 1})
        time.sleep(2)
        run: dict[str, Any] = served.http.get(f"/api/v1/runs/{run_id}").json()
        assert run["status"] == "queued" and run["attempts"] == [], run
        [listed] = served.http.get("/api/v1/backends").json()
        assert not listed["healthy"] and "Slurm controller" in listed["problem"]
    finally:
        cluster.start_controller()
        wait_until(cluster.node_idle, 60, "the node idle again")
    run = wait_for_run(served.http.get, run_id, timeout=60)
    assert run["status"] == "succeeded", run


def test_a_restarted_server_stops_jobs_from_their_stored_handles_alone(
    served: Served, cluster: SlurmCluster, settings: Settings, tmp_path: Path
) -> None:
    run_ids = [served.submit("sleeper", {"seconds": 60, "tag": f"orphan-{n}"}) for n in range(2)]
    job_ids = [slurm_job(served, run_id) for run_id in run_ids]
    with served.platform.database.read() as session:
        handles = [
            dict(session.scalars(select(AttemptRow).where(AttemptRow.run_id == run_id)).one().handle or {})
            for run_id in run_ids
        ]
    del handles[1]["job_id"]  # as stored before the job was seen running: found by its name
    # A new backend, as a server started after a crash has: it never saw these jobs.
    config = served.platform.workspace.spec().declared_backends()["hpc"]
    assert isinstance(config, SlurmBackendSpec)
    services = RemoteServices(served.platform.artifacts, served.platform.logs, settings.grace_seconds, lambda: None)
    after_restart = SlurmBackend("hpc", config, services, state_dir=tmp_path)
    try:
        for handle in handles:
            after_restart.cancel(handle, AttemptStatus.LOST)
        wait_until(
            lambda: not any(job_active(cluster, job_id) for job_id in job_ids),
            settings.grace_seconds + 10,
            f"jobs {job_ids} gone from squeue",
        )
    finally:
        after_restart.close()


def test_a_node_without_modelrunner_fails_the_attempt_with_what_slurm_said(
    settings: Settings, workspace: Path, cluster: SlurmCluster
) -> None:
    declare_slurm(workspace, python="/nonexistent/python3")
    served = Served(settings)
    try:
        run = wait_for_run(served.http.get, served.submit("noop", {"n": 1}), timeout=30)
    finally:
        served.stop()

    assert run["status"] == "failed"
    error = run["attempts"][0]["error"]
    assert "without an outcome" in error and "127" in error, error
    assert "/nonexistent/python3" in error  # the end of Slurm's output file says what went wrong
