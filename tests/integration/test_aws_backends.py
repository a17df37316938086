"""The ``aws-ecs`` and ``aws-batch`` backends against moto in server mode (ECS, Batch and S3 over
HTTP; the backends' boto3 clients are not mocked), with the artifact store in moto's S3.

moto keeps the books of ECS and Batch but runs no containers, so the test plays the container
runtime on this machine:

- ECS: :class:`FargateRuntime` watches the emulator for RUNNING tasks it has not run (ListTasks,
  DescribeTasks), runs their container override (``python -m modelrunner exec`` with
  ``MODELRUNNER_JOB``) as a local process, and stops the task through the API with ECS's
  "Essential container in task exited" when the process exits. A task stopped by someone else
  (StopTask: modelrunner's cancel, or the test injecting a Spot interruption) gets SIGTERM, as
  ECS does. moto's tasks stay RUNNING until stopped (its state manager is told so).
- Batch: moto's Batch runs each job itself (SUBMITTED ... RUNNING, then SUCCEEDED or FAILED by
  the container's exit status; TerminateJob stops the container), through a Docker client:
  :class:`LocalDocker` stands in for Docker and runs the job's container as a local process.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelrunner.backends.base import RemoteServices
from modelrunner.settings import Settings
from tests import data_fixtures
from tests.conftest import free_port, wait_for_run
from tests.data_fixtures import S3
from tests.integration.runs_api import process_gone, wait_until
from tests.integration.served import Served, read_pids

boto3 = pytest.importorskip("boto3")

moto_server = data_fixtures.moto_server
s3 = data_fixtures.s3

REGION = "us-east-1"
SPOT_REASON = "Your Spot Task was interrupted."


def container_env(environment: dict[str, str]) -> dict[str, str]:
    """What a container of these tests sees: this machine's environment (AWS credentials and the
    S3 endpoint, as a task role and a VPC endpoint would give) and the container's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELRUNNER_")}
    return env | environment


def container_command(command: list[str]) -> list[str]:
    """The container's command, with this interpreter as the image's ``python``."""
    return [sys.executable, *command[1:]] if command and command[0] == "python" else command


# --- ECS ---------------------------------------------------------------------------------------


@dataclass
class Launched:
    task_arn: str
    capacity: str | None
    command: list[str]
    environment: dict[str, str]
    process: subprocess.Popen[bytes]
    stopped: bool = False

    @property
    def job(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.environment["MODELRUNNER_JOB"])
        return parsed


@dataclass
class FargateRuntime:
    """Runs the emulator's RUNNING tasks of ``cluster`` as local processes (see the module's docstring)."""

    ecs: Any
    cluster: str
    log_folder: Path
    container: str = "runner"
    launched: dict[str, Launched] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="fargate-runtime", daemon=True)
        self._thread.start()

    def of_run(self, run_id: int) -> list[Launched]:
        return sorted(
            (t for t in self.launched.values() if t.job["run_id"] == run_id), key=lambda t: t.job["attempt_number"]
        )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for task in self.launched.values():
            if task.process.poll() is None:
                task.process.kill()
                task.process.wait()

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            running = self.ecs.list_tasks(cluster=self.cluster, desiredStatus="RUNNING")["taskArns"]
            for task in self._describe([arn for arn in running if arn not in self.launched]):
                self._run(task)
            ours = [arn for arn, t in self.launched.items() if not t.stopped]
            for task in self._describe(ours):
                launched = self.launched[task["taskArn"]]
                if task["lastStatus"] == "STOPPED":  # stopped through the API: SIGTERM, as ECS does
                    launched.stopped = True
                    if launched.process.poll() is None:
                        launched.process.send_signal(signal.SIGTERM)
                elif launched.process.poll() is not None:
                    launched.stopped = True
                    self.ecs.stop_task(
                        cluster=self.cluster, task=task["taskArn"], reason="Essential container in task exited"
                    )

    def _describe(self, arns: list[str]) -> list[dict[str, Any]]:
        if not arns:
            return []
        tasks: list[dict[str, Any]] = self.ecs.describe_tasks(cluster=self.cluster, tasks=arns)["tasks"]
        return tasks

    def _run(self, task: dict[str, Any]) -> None:
        [override] = [o for o in task["overrides"]["containerOverrides"] if o["name"] == self.container]
        environment = {e["name"]: e["value"] for e in override.get("environment", [])}
        log = (self.log_folder / f"task-{task['taskArn'].rsplit('/', 1)[-1]}.log").open("ab")
        process = subprocess.Popen(
            container_command(override["command"]), env=container_env(environment), stdout=log, stderr=subprocess.STDOUT
        )
        self.launched[task["taskArn"]] = Launched(
            task["taskArn"], task.get("capacityProviderName"), override["command"], environment, process
        )


def moto_api(moto: str, path: str, body: dict[str, Any]) -> None:
    response = httpx.post(f"{moto}/moto-api/{path}", json=body, timeout=10)
    assert response.status_code < 300, response.text


@pytest.fixture
def ecs_cluster(s3: S3, moto_server: str) -> Iterator[dict[str, Any]]:
    """A Fargate cluster with FARGATE and FARGATE_SPOT, a task definition and a subnet in moto;
    moto's tasks stay RUNNING until they are stopped."""
    ec2 = boto3.client("ec2", endpoint_url=moto_server, region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    # moto's RunTask needs DNS hostnames for a task's network interface (as tasks that pull from ECR do).
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    ecs = boto3.client("ecs", endpoint_url=moto_server, region_name=REGION)
    cluster = f"models-{uuid.uuid4().hex[:8]}"
    ecs.create_cluster(clusterName=cluster, capacityProviders=["FARGATE", "FARGATE_SPOT"])
    ecs.register_task_definition(
        family="modelrunner",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[
            {"name": "runner", "image": "example/modelrunner:latest", "essential": True, "cpu": 256, "memory": 512}
        ],
    )
    moto_api(
        moto_server,
        "state-manager/set-transition",
        {"model_name": "ecs::task", "transition": {"progression": "manual", "times": 10**9}},
    )
    try:
        yield {"ecs": ecs, "cluster": cluster, "subnet": subnet}
    finally:
        moto_api(moto_server, "state-manager/unset-transition", {"model_name": "ecs::task"})


def artifacts_in_s3(settings: Settings, s3: S3, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings with the artifact store in a new bucket of moto's S3 (reached from the server
    and from the containers through AWS_ENDPOINT_URL_S3)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.endpoint_url)
    bucket = s3.create_bucket()
    return settings.model_copy(update={"artifacts_url": f"s3://{bucket}/artifacts"})


def declare_ecs(workspace: Path, ecs_cluster: dict[str, Any], endpoint_url: str, *, capacity: str) -> None:
    """A workspace whose runs go to the ``aws-ecs`` backend ``spot`` on the test's cluster."""
    (workspace / "modelrunner.yaml").write_text(
        "name: aws-workspace\nbackends:\n  spot:\n    type: aws-ecs\n"
        f"    cluster: {ecs_cluster['cluster']}\n    task_definition: modelrunner\n    container: runner\n"
        f"    subnets: [{ecs_cluster['subnet']}]\n    capacity: {capacity}\n"
        f"    region: {REGION}\n    endpoint_url: {endpoint_url}\n"
        "default_backend: spot\n",
        encoding="utf-8",
    )


@pytest.fixture
def on_ecs(
    settings: Settings,
    workspace: Path,
    s3: S3,
    moto_server: str,
    ecs_cluster: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[tuple[Served, FargateRuntime]]:
    declare_ecs(workspace, ecs_cluster, moto_server, capacity="FARGATE_SPOT")
    runtime = FargateRuntime(ecs_cluster["ecs"], ecs_cluster["cluster"], tmp_path)
    served = Served(artifacts_in_s3(settings, s3, monkeypatch))
    try:
        yield served, runtime
    finally:
        served.stop()
        runtime.close()


def test_an_ecs_run_succeeds_on_fargate_spot_with_outputs_progress_and_log(
    on_ecs: tuple[Served, FargateRuntime], ecs_cluster: dict[str, Any]
) -> None:
    served, runtime = on_ecs
    assert served.platform.backends["spot"].health() is None
    run_id = served.submit("sleeper", {"seconds": 1.5, "tag": "ecs"})

    run = wait_for_run(served.http.get, run_id, timeout=60)

    assert run["status"] == "succeeded", run
    assert [a["status"] for a in run["attempts"]] == ["succeeded"]
    assert served.http.get(f"/api/v1/runs/{run_id}/outputs/done.txt").text == "slept 1.5\n"
    progress = [e["data"] for e in served.events(run_id) if e["type"] == "run.progress"]
    assert any(p["message"].startswith("step ") for p in progress), progress
    statuses = [e["data"]["to"] for e in served.events(run_id) if e["type"] == "run.status"]
    assert statuses == ["queued", "starting", "running", "succeeded"]
    assert "::progress:: 1.0000 done" in served.http.get(f"/api/v1/runs/{run_id}/logs").text
    # What RunTask asked of ECS: Fargate Spot, and the container override that runs the attempt.
    [task] = runtime.of_run(run_id)
    assert task.capacity == "FARGATE_SPOT"
    assert task.command == ["python", "-m", "modelrunner", "exec"]
    assert set(task.environment) == {"MODELRUNNER_JOB"}
    assert (task.job["run_id"], task.job["attempt_number"]) == (run_id, 1)
    [described] = ecs_cluster["ecs"].describe_tasks(cluster=ecs_cluster["cluster"], tasks=[task.task_arn])["tasks"]
    assert described["lastStatus"] == "STOPPED"
    assert described["startedBy"] == f"modelrunner-attempt-{task.job['attempt_id']}"


def test_spot_interruptions_are_retried_and_the_last_attempt_runs_on_demand(
    on_ecs: tuple[Served, FargateRuntime], ecs_cluster: dict[str, Any], tmp_path: Path
) -> None:
    served, runtime = on_ecs
    counter = tmp_path / "pids"
    run_id = served.submit("sleeper", {"seconds": 4, "counter": str(counter), "tag": "spot"})
    for interruption in (1, 2):  # retries.lost is 2: the third attempt is the last one
        wait_until(lambda n=interruption: len(read_pids(counter)) == n, 30, f"attempt {interruption} runs its model")
        [*_, task] = runtime.of_run(run_id)
        ecs_cluster["ecs"].stop_task(cluster=ecs_cluster["cluster"], task=task.task_arn, reason=SPOT_REASON)

    run = wait_for_run(served.http.get, run_id, timeout=60)

    assert run["status"] == "succeeded", run
    attempts = run["attempts"]
    assert [a["status"] for a in attempts] == ["preempted", "preempted", "succeeded"], attempts
    assert SPOT_REASON in attempts[0]["error"]
    assert [t.capacity for t in runtime.of_run(run_id)] == ["FARGATE_SPOT", "FARGATE_SPOT", "FARGATE"]
    statuses = [e["data"]["to"] for e in served.events(run_id) if e["type"] == "run.status"]
    assert statuses.count("preempted") == 2
    assert all(process_gone(pid) for pid in read_pids(counter))


def test_cancel_stops_the_ecs_task_and_the_model(
    on_ecs: tuple[Served, FargateRuntime], ecs_cluster: dict[str, Any], settings: Settings, tmp_path: Path
) -> None:
    served, runtime = on_ecs
    counter = tmp_path / "pids"
    run_id = served.submit("sleeper", {"seconds": 60, "counter": str(counter)})
    [pid] = wait_until(lambda: read_pids(counter), 30, "the model runs in the task")
    wait_until(lambda: served.http.get(f"/api/v1/runs/{run_id}").json()["status"] == "running", 10, "running")

    assert served.http.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200

    [task] = runtime.of_run(run_id)

    def task_stopped() -> dict[str, Any] | None:
        ecs = ecs_cluster["ecs"]
        [described] = ecs.describe_tasks(cluster=ecs_cluster["cluster"], tasks=[task.task_arn])["tasks"]
        return described if described["lastStatus"] == "STOPPED" else None

    described = wait_until(task_stopped, 10, "StopTask reached the emulator")
    assert described["stoppedReason"] == "modelrunner: cancelled"
    wait_until(lambda: process_gone(pid), settings.grace_seconds + 10, f"model process {pid} gone")
    run = wait_for_run(served.http.get, run_id)
    assert run["status"] == "cancelled"
    wait_until(
        lambda: served.http.get(f"/api/v1/runs/{run_id}").json()["attempts"][0]["status"] == "cancelled",
        10,
        "the attempt recorded as cancelled",
    )


class CuttableLink:
    """A TCP link from a port of its own to ``upstream`` (moto) that the test can cut and mend,
    as a network outage between the server and AWS would: while cut, connections are refused."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self._upstream = (host, int(port))
        self.port = free_port()
        self._server: socketserver.ThreadingTCPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def mend(self) -> None:
        upstream = self._upstream

        class Relay(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with socket.create_connection(upstream) as far:
                    ends = {self.request: far, far: self.request}
                    with selectors.DefaultSelector() as selector:
                        for end in ends:
                            selector.register(end, selectors.EVENT_READ)
                        while True:
                            for key, _ in selector.select():
                                data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                                if not data:
                                    return
                                ends[key.fileobj].sendall(data)  # type: ignore[index]

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Relay)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def cut(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def test_a_run_waits_in_the_queue_while_ecs_cannot_be_reached_then_runs(
    settings: Settings,
    workspace: Path,
    s3: S3,
    moto_server: str,
    ecs_cluster: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    link = CuttableLink(moto_server)  # cut from the start: the server cannot reach ECS
    declare_ecs(workspace, ecs_cluster, link.url, capacity="FARGATE")
    runtime = FargateRuntime(ecs_cluster["ecs"], ecs_cluster["cluster"], tmp_path)
    served = Served(artifacts_in_s3(settings, s3, monkeypatch))
    try:
        run_id = served.submit("sleeper", {"seconds": 0.5, "tag": "outage"})

        def put_back() -> dict[str, Any] | None:
            run: dict[str, Any] = served.http.get(f"/api/v1/runs/{run_id}").json()
            given_up = run["attempts"] and run["attempts"][0]["status"] == "cancelled"
            return run if given_up and run["status"] == "queued" else None

        waiting = wait_until(put_back, 30, "the run back in the queue after a launch that could not reach ECS")
        [attempt] = waiting["attempts"]
        assert attempt["status"] == "cancelled", attempt
        assert attempt["error"].startswith("not launched: ECS did not run the task: "), attempt
        assert attempt["error"].endswith("the run waits in the queue until backend spot answers"), attempt
        assert served.platform.backends["spot"].health() is not None
        time.sleep(3)  # ECS is asked again at growing intervals, and no attempt is recorded meanwhile
        assert len(served.http.get(f"/api/v1/runs/{run_id}").json()["attempts"]) == 1

        link.mend()
        run = wait_for_run(served.http.get, run_id, timeout=90)
        statuses = [e["data"]["to"] for e in served.events(run_id) if e["type"] == "run.status"]
    finally:
        served.stop()
        runtime.close()
        link.cut()

    assert run["status"] == "succeeded", run
    assert [a["status"] for a in run["attempts"]] == ["cancelled", "succeeded"]
    assert run["attempts"][1]["error"] is None
    assert statuses == ["queued", "starting", "queued", "starting", "running", "succeeded"], statuses


def test_an_unknown_ecs_cluster_is_reported_by_health(on_ecs: tuple[Served, FargateRuntime], moto_server: str) -> None:
    from modelrunner.backends.aws_ecs import AwsEcsBackend
    from modelrunner.spec.backend_spec import AwsEcsBackendSpec

    served, _ = on_ecs
    spec = AwsEcsBackendSpec(
        type="aws-ecs",
        cluster="nowhere",
        task_definition="modelrunner",
        container="runner",
        subnets=["subnet-1"],
        region=REGION,
        endpoint_url=moto_server,
    )
    backend = AwsEcsBackend(
        "other", spec, RemoteServices(served.platform.artifacts, served.platform.logs, 1, lambda: None)
    )

    assert backend.health() == "the ECS cluster nowhere does not exist or is not active"


# --- Batch -------------------------------------------------------------------------------------


class LocalContainer:
    """What moto's Batch uses of a Docker container, as a local process."""

    def __init__(self, command: list[str], environment: dict[str, str], log: Path) -> None:
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                container_command(command), env=container_env(environment), stdout=out, stderr=subprocess.STDOUT
            )
        self.command = command
        self.environment = environment
        self.attrs: dict[str, Any] = {}

    @property
    def status(self) -> str:
        return "running" if self.process.poll() is None else "exited"

    def reload(self) -> None:
        pass

    def kill(self) -> None:
        # As Batch stops a container: SIGTERM, SIGKILL if it has not ended after a while.
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def wait(self) -> dict[str, int]:
        return {"StatusCode": self.process.wait()}

    def logs(self, **_: Any) -> bytes:
        return b""  # the attempt's log reaches the server through the artifact store

    def remove(self) -> None:
        pass


class LocalDocker:
    """The Docker client moto's Batch runs jobs with: containers are local processes."""

    def __init__(self, log_folder: Path) -> None:
        self.log_folder = log_folder
        self.started: list[LocalContainer] = []
        self.containers = self

    def run(self, *, command: list[str], environment: dict[str, str], name: str, **_: Any) -> LocalContainer:
        container = LocalContainer(command, environment, self.log_folder / f"{name}.log")
        self.started.append(container)
        return container

    def of_run(self, run_id: int) -> list[LocalContainer]:
        return [c for c in self.started if json.loads(c.environment["MODELRUNNER_JOB"])["run_id"] == run_id]


@pytest.fixture
def batch_queues(s3: S3, moto_server: str) -> dict[str, Any]:
    """Two job queues with a job definition each in moto's Batch: default, and one for `large`."""
    iam = boto3.client("iam", endpoint_url=moto_server, region_name=REGION)
    suffix = uuid.uuid4().hex[:8]
    role = iam.create_role(RoleName=f"batch-{suffix}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    batch = boto3.client("batch", endpoint_url=moto_server, region_name=REGION)
    environment = batch.create_compute_environment(
        computeEnvironmentName=f"local-{suffix}", type="UNMANAGED", state="ENABLED", serviceRole=role
    )["computeEnvironmentArn"]
    names: dict[str, Any] = {"batch": batch}
    for kind in ("default", "large"):
        queue = batch.create_job_queue(
            jobQueueName=f"{kind}-{suffix}",
            state="ENABLED",
            priority=1,
            computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment}],
        )
        definition = batch.register_job_definition(
            jobDefinitionName=f"modelrunner-{kind}-{suffix}",
            type="container",
            containerProperties={"image": "example/modelrunner:latest", "vcpus": 1, "memory": 512, "command": ["true"]},
        )
        names[kind] = {
            "queue": queue["jobQueueArn"],
            "queue_name": queue["jobQueueName"],
            "definition": definition["jobDefinitionArn"],
            "definition_name": definition["jobDefinitionName"],
        }
    return names


@pytest.fixture
def on_batch(
    settings: Settings,
    workspace: Path,
    s3: S3,
    moto_server: str,
    batch_queues: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[tuple[Served, LocalDocker]]:
    from moto.utilities.docker_utilities import DockerModel

    docker = LocalDocker(tmp_path)
    monkeypatch.setattr(DockerModel, "docker_client", property(lambda self: docker))
    default, large = batch_queues["default"], batch_queues["large"]
    (workspace / "modelrunner.yaml").write_text(
        "name: aws-workspace\nresource_classes:\n  large: {cpu: 2, memory: 4Gi}\n"
        "backends:\n  batch:\n    type: aws-batch\n"
        f"    job_queue: {default['queue_name']}\n    job_definition: {default['definition_name']}\n"
        f"    classes:\n      large: {{job_queue: {large['queue_name']}, job_definition: {large['definition_name']}}}\n"
        f"    region: {REGION}\n    endpoint_url: {moto_server}\n"
        "default_backend: batch\n",
        encoding="utf-8",
    )
    model = workspace / "sleeper" / "model.yaml"
    model.write_text(model.read_text().replace("resources: {timeout: 60}", "resources: {timeout: 60, class: large}"))
    served = Served(artifacts_in_s3(settings, s3, monkeypatch))
    try:
        yield served, docker
    finally:
        served.stop()
        for container in docker.started:
            if container.process.poll() is None:
                container.process.kill()
                container.process.wait()


def batch_job_of(batch: Any, queue: str, run_id: int, docker: LocalDocker) -> dict[str, Any]:
    [container] = docker.of_run(run_id)
    [job] = batch.describe_jobs(jobs=[container.environment["AWS_BATCH_JOB_ID"]])["jobs"]
    return dict(job)


def test_a_batch_run_goes_to_the_queue_and_definition_of_its_resource_class(
    on_batch: tuple[Served, LocalDocker], batch_queues: dict[str, Any]
) -> None:
    served, docker = on_batch
    assert served.platform.backends["batch"].health() is None
    run_id = served.submit("sleeper", {"seconds": 1, "tag": "batch"})

    run = wait_for_run(served.http.get, run_id, timeout=60)

    assert run["status"] == "succeeded", run
    assert served.http.get(f"/api/v1/runs/{run_id}/outputs/done.txt").text == "slept 1\n"
    assert "::progress:: 1.0000 done" in served.http.get(f"/api/v1/runs/{run_id}/logs").text
    job = batch_job_of(batch_queues["batch"], batch_queues["large"]["queue"], run_id, docker)
    assert job["jobQueue"] == batch_queues["large"]["queue"]
    assert job["jobDefinition"] == batch_queues["large"]["definition"]
    assert job["status"] == "SUCCEEDED"
    assert job["container"]["command"] == ["python", "-m", "modelrunner", "exec"]


def test_cancel_terminates_the_batch_job_and_the_model(
    on_batch: tuple[Served, LocalDocker], batch_queues: dict[str, Any], settings: Settings, tmp_path: Path
) -> None:
    served, docker = on_batch
    counter = tmp_path / "pids"
    run_id = served.submit("sleeper", {"seconds": 60, "counter": str(counter)})
    [pid] = wait_until(lambda: read_pids(counter), 30, "the model runs in the job")
    wait_until(lambda: served.http.get(f"/api/v1/runs/{run_id}").json()["status"] == "running", 10, "running")

    assert served.http.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200

    wait_until(lambda: process_gone(pid), settings.grace_seconds + 10, f"model process {pid} gone")
    run = wait_for_run(served.http.get, run_id)
    assert run["status"] == "cancelled"

    def job_ended() -> dict[str, Any] | None:
        job = batch_job_of(batch_queues["batch"], batch_queues["large"]["queue"], run_id, docker)
        return job if job["status"] == "FAILED" else None

    job = wait_until(job_ended, 15, "TerminateJob ended the job")
    assert job["statusReason"] == "modelrunner: cancelled"
    wait_until(
        lambda: served.http.get(f"/api/v1/runs/{run_id}").json()["attempts"][0]["status"] == "cancelled",
        10,
        "the attempt recorded as cancelled",
    )
