"""Container images as models, for real: a small image built FROM the suite's base image runs as a
model through ``modelrunner serve`` on a ``container`` backend (podman here), under the model
contract: outputs, progress, cancel, timeout, a memory limit, the cache, a re-tagged image as a
new version, and a server killed while its container runs.

Needs root, podman, runc and debootstrap (tests/container_images.py); the first run makes the
base image (about two minutes), later runs find it. pytest -s shows what a test measured."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import container_images
from tests.conftest import FINAL, Server, empty_database
from tests.container_images import BASE_IMAGE, NEEDS_PODMAN, PodmanBase, build, run
from tests.integration.runs_api import wait_until

pytestmark = [
    # The tests share one server and its images: on one xdist worker, they are made once.
    pytest.mark.xdist_group("container_models"),
    pytest.mark.timeout(900),
    NEEDS_PODMAN,
]
podman_base = container_images.podman_base  # the session's fixture: the base image and podman's settings

REPOSITORY = "localhost/modelrunner-test-model"
# Each process's own tag and backend: should xdist split the module over workers, their servers
# and re-tags stay apart (the images themselves are the same builds).
_OWN = secrets.token_hex(3)
TAG = f"{REPOSITORY}:current-{_OWN}"  # what the models name; moved between the two builds below
BACKEND = f"boxes-{_OWN}"

# The model inside the image: it knows nothing of modelrunner, only the contract's variables.
MODEL = """\
import json, os, pathlib, sys, time

def cpu_limit():  # the CPUs the container's cgroup allows (cgroups v2, else v1); None: unlimited
    for quota_file, period_file in (("cpu.max", None), ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us")):
        try:
            fields = pathlib.Path("/sys/fs/cgroup", quota_file).read_text().split()
        except OSError:
            continue
        if period_file is not None:
            fields.append(pathlib.Path("/sys/fs/cgroup", period_file).read_text().strip())
        return None if fields[0] in ("max", "-1") else int(fields[0]) / int(fields[1])
    return None

params = json.loads(pathlib.Path(os.environ["MODELRUNNER_PARAMS"]).read_text())
mode = sys.argv[1] if len(sys.argv) > 1 else params.get("mode", "ok")
outputs = pathlib.Path(os.environ["MODELRUNNER_OUTPUTS"])
print("::progress:: 0.25 started", flush=True)
if mode == "sleep":
    time.sleep(600)
if mode == "fail":
    pathlib.Path(os.environ["MODELRUNNER_FAILURE_NOTE"]).write_text("no case counts for region north\\n")
    sys.exit(3)
if mode == "hog":
    hog = bytearray(400 * 2**20)
    hog[:: 4096] = b"x" * len(range(0, len(hog), 4096))  # every page touched: resident, not just promised
print("::progress:: 0.5 halfway", flush=True)
(outputs / "result.json").write_text(json.dumps({
    "double": 2 * params["x"],
    "image_version": os.environ["IMAGE_VERSION"],
    "uid": os.getuid(),
    "networks": sorted(os.listdir("/sys/class/net")),
    "model_files": sorted(os.listdir("/modelrunner/model")),
    "cpus": cpu_limit(),
}))
"""

CONTAINERFILE = """\
FROM {base}
ENV IMAGE_VERSION={version}
COPY model.py /opt/model/model.py
WORKDIR /opt/model
CMD ["python3", "model.py"]
"""

PARAMS = """\
params:
  type: object
  properties:
    x: {type: number}
    mode: {enum: [ok, sleep, hog, fail], default: ok}
  required: [x]
"""

WORKSPACE = f"""\
name: container-models
backends:
  {BACKEND}: {{type: container, slots: 2}}
  here: {{type: local}}
default_backend: {BACKEND}
"""

MODELS = {
    "boxed": f"name: boxed\nimage: {TAG}\nresources: {{memory: 128Mi, cpu: 1.5}}\n{PARAMS}"
    "outputs:\n  - {path: result.json}\n",
    # `command` replaces the image's CMD; the run may take 3 s.
    "boxed-timed": f'name: boxed-timed\nimage: {TAG}\ncommand: ["python3", "model.py", "sleep"]\n'
    f"resources: {{timeout: 3}}\n{PARAMS}",
    "no-such-image": f"name: no-such-image\nimage: {REPOSITORY}-missing:1\n{PARAMS}",
    # A pipeline with an image step and a command step reading its output (run --local runs both).
    "boxed-steps": f"name: boxed-steps\n{PARAMS}steps:\n  boxed: {{image: {TAG}, outputs: [{{path: result.json}}]}}\n"
    "  read: {command: [python, -c, \"import os, shutil; shutil.copy(os.environ['MODELRUNNER_INPUTS'] + "
    "'/boxed/result.json', os.environ['MODELRUNNER_OUTPUTS'] + '/seen.json')\"], needs: [boxed]}\n",
    # A command model, to compare what a submit of an image model costs (its tag is resolved).
    "plain": f'name: plain\nbackend: here\ncommand: ["python", "-c", "pass"]\n{PARAMS}',
}


@dataclass
class Served:
    server: Server
    env: dict[str, str]  # podman's
    workspace: Path

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{self.server.url}{path}", json=body, headers=self.server.headers, timeout=30)

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.server.url}{path}", headers=self.server.headers, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def submit(self, model: str, params: dict[str, Any], **options: Any) -> dict[str, Any]:
        response = self.post(f"/api/v1/models/{model}/runs", {"params": params, **options})
        assert response.status_code in (200, 201), response.text
        answer: dict[str, Any] = response.json()
        return answer

    def wait(self, run_id: int, timeout: float = 90) -> dict[str, Any]:
        return wait_until(
            lambda: (run := self.get(f"/api/v1/runs/{run_id}"))["status"] in FINAL and run,
            timeout,
            f"run {run_id} ends",
        )

    def output(self, run_id: int, path: str) -> Any:
        return self.get(f"/api/v1/runs/{run_id}/outputs/{path}")

    def containers(self) -> list[str]:
        """Names of the containers of the server's installation, running or not."""
        listed = run(
            ["podman", "ps", "--all", "--filter", f"label=modelrunner.backend={BACKEND}", "--format", "{{.Names}}"],
            self.env,
        )
        return listed.split()


def _build_image(base: PodmanBase, folder: Path, version: str) -> str:
    """The model's image with IMAGE_VERSION=version, tagged :v<version>; its id."""
    context = folder / f"v{version}"
    context.mkdir()
    (context / "model.py").write_text(MODEL)
    (context / "Containerfile").write_text(CONTAINERFILE.format(base=BASE_IMAGE, version=version))
    build(context / "Containerfile", context, f"{REPOSITORY}:v{version}", base.env)
    return run(["podman", "image", "inspect", f"{REPOSITORY}:v{version}", "--format", "{{.Id}}"], base.env).strip()


def _retag(version: str, env: dict[str, str]) -> None:
    run(["podman", "tag", f"{REPOSITORY}:v{version}", TAG], env)


@pytest.fixture(scope="module")
def served(podman_base: PodmanBase, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("container-models")
    _build_image(podman_base, folder, "1")
    _build_image(podman_base, folder, "2")
    _retag("1", podman_base.env)
    workspace = folder / "workspace"
    for name, spec in MODELS.items():
        (workspace / name).mkdir(parents=True)
        (workspace / name / "model.yaml").write_text(spec)
    (workspace / "modelrunner.yaml").write_text(WORKSPACE)
    with empty_database(folder / "state") as url:
        env = {key: value for key, value in podman_base.env.items() if not key.startswith("MODELRUNNER_")}
        env.update(
            MODELRUNNER_WORKSPACE=str(workspace),
            MODELRUNNER_DATA_DIR=str(folder / "state"),
            MODELRUNNER_DATABASE_URL=url,
            MODELRUNNER_GRACE_SECONDS="2",
            MODELRUNNER_POLL_SECONDS="0.2",
            MODELRUNNER_LEASE_SECONDS="5",
        )
        server = Server(env, folder / "server.log")
        server.start()
        try:
            yield Served(server, podman_base.env, workspace)
        finally:
            server.stop()
            for name in Served(server, podman_base.env, workspace).containers():
                subprocess.run(["podman", "rm", "--force", name], env=podman_base.env, capture_output=True)
            subprocess.run(["podman", "untag", TAG, TAG], env=podman_base.env, capture_output=True)


def test_an_image_runs_as_a_model_under_the_contract(served: Served) -> None:
    submitted = served.submit("boxed", {"x": 21})
    assert submitted["backend"] == BACKEND
    run_ = served.wait(submitted["id"])
    assert run_["status"] == "succeeded", run_["error"]
    result = served.output(run_["id"], "result.json")
    assert result["double"] == 42 and result["image_version"] == "1"
    # Not root inside the container, no network but the loopback, the model folder mounted.
    assert result["uid"] != 0
    assert result["networks"] == ["lo"]
    assert result["model_files"] == ["model.yaml"]
    assert result["cpus"] == 1.5  # resources.cpu, as the container's CPU quota
    events = served.get(f"/api/v1/runs/{run_['id']}/events")["items"]
    progress = [(e["data"]["fraction"], e["data"]["message"]) for e in events if e["type"] == "run.progress"]
    assert (0.5, "halfway") in progress, events
    assert served.containers() == []  # removed once the attempt ended


def test_an_identical_request_is_answered_from_the_cache_until_the_tag_moves(served: Served) -> None:
    first = served.submit("boxed", {"x": 5})
    assert served.wait(first["id"])["status"] == "succeeded"
    again = served.submit("boxed", {"x": 5})
    assert again["submission"] == "cache_hit" and again["source_run_id"] == first["id"]
    assert again["model_version"] == first["model_version"]

    _retag("2", served.env)  # a new push of the same tag
    try:
        moved = served.submit("boxed", {"x": 5})
        assert moved["submission"] == "created", "a new image under the same tag is a new model version"
        assert moved["model_version"] != first["model_version"]
        assert served.wait(moved["id"])["status"] == "succeeded"
        assert served.output(moved["id"], "result.json")["image_version"] == "2"
    finally:
        _retag("1", served.env)
    # Back at the first image: its version, and its result from the cache.
    back = served.submit("boxed", {"x": 5})
    assert back["submission"] == "cache_hit" and back["model_version"] == first["model_version"]


def test_a_queued_run_keeps_the_image_it_was_submitted_with(served: Served) -> None:
    """The recorded version names the image by digest: moving the tag does not change what runs."""
    submitted = served.submit("boxed", {"x": 7})
    _retag("2", served.env)
    try:
        assert served.wait(submitted["id"])["status"] == "succeeded"
    finally:
        _retag("1", served.env)
    assert served.output(submitted["id"], "result.json")["image_version"] == "1"


def test_a_cancelled_run_stops_and_removes_its_container(served: Served) -> None:
    submitted = served.submit("boxed", {"x": 1, "mode": "sleep"})
    wait_until(lambda: served.get(f"/api/v1/runs/{submitted['id']}")["progress"]["fraction"], 60, "the model runs")
    assert len(served.containers()) == 1
    started = time.monotonic()
    assert served.post(f"/api/v1/runs/{submitted['id']}/cancel", {}).status_code == 200
    assert served.wait(submitted["id"], timeout=30)["status"] == "cancelled"
    wait_until(lambda: served.containers() == [], 30, "the container is removed")
    print(f"\ncancel to no container: {time.monotonic() - started:.2f} s")


def test_a_run_over_its_timeout_is_stopped(served: Served) -> None:
    run_ = served.wait(served.submit("boxed-timed", {"x": 1})["id"], timeout=60)
    assert run_["status"] == "timed_out"
    wait_until(lambda: served.containers() == [], 30, "the container is removed")


def test_the_memory_limit_is_enforced(served: Served) -> None:
    run_ = served.wait(served.submit("boxed", {"x": 1, "mode": "hog"})["id"])
    assert run_["status"] == "failed"
    assert "ran out of memory" in run_["error"] and "128Mi" in run_["error"], run_["error"]


def test_a_failing_model_says_why_through_its_failure_note(served: Served) -> None:
    run_ = served.wait(served.submit("boxed", {"x": 1, "mode": "fail"})["id"])
    assert run_["status"] == "failed"
    assert run_["error"] == "the model ended with exit status 3: no case counts for region north"


def test_an_image_that_cannot_be_resolved_is_refused_at_submit(served: Served) -> None:
    response = served.post("/api/v1/models/no-such-image/runs", {"params": {"x": 1}})
    assert response.status_code == 409, response.text
    assert f"{REPOSITORY}-missing:1" in response.json()["detail"]
    assert served.get("/api/v1/runs?model=no-such-image")["items"] == []


def test_the_local_backend_refuses_an_image_model_and_names_the_container_backend(served: Served) -> None:
    run_ = served.wait(served.submit("boxed", {"x": 3}, backend="here")["id"])
    assert run_["status"] == "failed"
    assert "container" in run_["error"], run_["error"]


def test_run_local_runs_an_image_model_under_the_same_contract(served: Served, tmp_path: Path) -> None:
    env = {key: value for key, value in served.env.items() if not key.startswith("MODELRUNNER_")}
    command = [sys.executable, "-m", "modelrunner", "run", "boxed", "--local", "-p", "x=4"]
    command += ["--workspace", str(served.workspace), "--output-dir", str(tmp_path / "out")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["double"] == 8 and result["uid"] != 0 and result["networks"] == ["lo"]
    listed = run(["podman", "ps", "--all", "--filter", "label=modelrunner.local-run", "--format", "{{.Names}}"], env)
    assert listed.split() == []


def test_run_local_runs_a_pipeline_with_an_image_step(served: Served, tmp_path: Path) -> None:
    env = {key: value for key, value in served.env.items() if not key.startswith("MODELRUNNER_")}
    command = [sys.executable, "-m", "modelrunner", "run", "boxed-steps", "--local", "-p", "x=5"]
    command += ["--workspace", str(served.workspace), "--output-dir", str(tmp_path / "out")]
    command += ["--store-dir", str(tmp_path / "store")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "out" / "read" / "seen.json").read_text())
    assert result["double"] == 10 and result["uid"] != 0 and result["networks"] == ["lo"]
    listed = run(["podman", "ps", "--all", "--filter", "label=modelrunner.local-run", "--format", "{{.Names}}"], env)
    assert listed.split() == []


def test_the_overhead_of_a_container_model_against_podman_run(served: Served) -> None:
    """Submit to the end of a trivial container model, against `podman run` of its image by hand."""
    by_hand = []
    for _ in range(3):
        started = time.monotonic()
        run(["podman", "run", "--rm", "--network", "none", f"{REPOSITORY}:v1", "python3", "-c", "pass"], served.env)
        by_hand.append(time.monotonic() - started)
    as_model = []
    for x in range(100, 103):
        started = time.monotonic()
        run_ = served.wait(served.submit("boxed", {"x": x})["id"])
        as_model.append(time.monotonic() - started)
        assert run_["status"] == "succeeded"
    hand, model = min(by_hand), min(as_model)
    # What resolving the tag adds to a submit: cache hits of the image model and of a command model.
    assert served.wait(served.submit("plain", {"x": 1})["id"])["status"] == "succeeded"
    answers: dict[str, list[float]] = {"boxed": [], "plain": []}
    for _ in range(5):
        for name, times in answers.items():
            started = time.monotonic()
            assert served.submit(name, {"x": 100 if name == "boxed" else 1})["submission"] == "cache_hit"
            times.append(time.monotonic() - started)
    boxed, plain = min(answers["boxed"]), min(answers["plain"])
    print(
        f"\npodman run by hand {hand:.2f} s; as a model, submit to succeeded {model:.2f} s (+{model - hand:.2f} s);"
        f" a cache hit answered in {boxed * 1000:.0f} ms (a command model's: {plain * 1000:.0f} ms)"
    )
    assert model < hand + 10


def test_a_restarted_server_removes_the_containers_of_the_one_killed(served: Served) -> None:
    submitted = served.submit("boxed", {"x": 2, "mode": "sleep"})
    wait_until(lambda: served.get(f"/api/v1/runs/{submitted['id']}")["progress"]["fraction"], 60, "the model runs")
    (name,) = served.containers()
    served.server.kill()
    try:
        # Whatever the killed server's supervisor managed, the container's record stays: the
        # restarted server removes it.
        served.server.start()
        wait_until(lambda: name not in served.containers(), 60, "the orphaned container is removed")
    finally:
        served.post(f"/api/v1/runs/{submitted['id']}/cancel", {})
    assert served.wait(submitted["id"], timeout=60)["status"] in FINAL
    wait_until(lambda: served.containers() == [], 60, "no container is left")
