"""Figure: a container image as a model, in the benchmark process (an attempt is the same code on
every runner): what an attempt on the container backend adds to ``podman run`` of the same image
by hand, measured in the same run, in turns.

- attempt: ``ContainerAttemptProcess.run`` of an image model (the scratch folder, params.json,
  the folders given to the container's user, the supervisor, ``podman run`` with the contract's
  mounts and limits, the output follower, the outputs collected, the container removed);
- by hand: ``podman run --rm`` of the same image with the same mounts and variables.

The image (FROM the base image that deploy/base-image.sh makes, as the tests do) reads its
parameters, reports progress and writes one output. podman needs this machine's settings
(shared/CONTAINERS.md): CONTAINERS_CONF is set to them when it is not set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from attempts import bench_job, timed_attempt
from harness import Bench
from report import Figure, median, ms

from modelrunner.backends.container import local_run_process
from modelrunner.execution.supervision import SupervisorService

BASE_IMAGE = "localhost/modelrunner-base:trixie"
IMAGE = "localhost/modelrunner-bench-model:1"
MODEL = """\
import json, os, pathlib
params = json.loads(pathlib.Path(os.environ["MODELRUNNER_PARAMS"]).read_text())
print("::progress:: 0.5 half way", flush=True)
pathlib.Path(os.environ["MODELRUNNER_OUTPUTS"], "doubled.txt").write_text(str(2 * params["n"]))
"""
CONTAINERS_CONF = """\
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
"""
SAMPLES = 10


def measure(bench: Bench) -> list[Figure]:
    name = "container image as a model (podman)"
    if shutil.which("podman") is None:
        return [Figure(name, "podman is not installed", "-", "-", "-", None)]
    if "CONTAINERS_CONF" not in os.environ:
        conf = bench.scratch / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        os.environ["CONTAINERS_CONF"] = str(conf)
    if subprocess.run(["podman", "image", "exists", BASE_IMAGE]).returncode != 0:
        return [Figure(name, f"no {BASE_IMAGE}: make it with deploy/base-image.sh", "-", "-", "-", None)]
    context = bench.scratch / "container-model"
    context.mkdir(parents=True)
    (context / "model.py").write_text(MODEL)
    (context / "Containerfile").write_text(
        f'FROM {BASE_IMAGE}\nCOPY model.py /model.py\nCMD ["python3", "/model.py"]\n'
    )
    subprocess.run(["podman", "build", "-q", "-t", IMAGE, str(context)], check=True, capture_output=True)
    samples = 3 if bench.quick else SAMPLES
    supervisors = SupervisorService()
    attempts: list[float] = []
    by_hand: list[float] = []
    try:
        for n in range(samples):  # taken in turns: the machine's load moves both alike
            attempts.append(_attempt(supervisors, context, bench.scratch / f"image-a{n}"))
            by_hand.append(_by_hand(bench.scratch / f"image-h{n}"))
    finally:
        supervisors.close()
    attempt, direct = median(attempts), median(by_hand)
    sign = "+" if attempt >= direct else "-"
    return [
        Figure(
            name=f"{name}: attempt against podman run by hand",
            measured=f"attempt {ms(attempt)}",
            baseline=f"podman run --rm by hand {ms(direct)}",
            compared=f"{sign}{ms(abs(attempt - direct))} ({attempt / direct:.2f}x)",
            target="-",
            met=None,
            notes=[f"medians of {samples}, taken in turns; runc with cgroupfs, --network none, --init"],
        )
    ]


def _attempt(supervisors: SupervisorService, model: Path, folder: Path) -> float:
    process = local_run_process(
        bench_job(image=IMAGE, declared_outputs=("doubled.txt",)),
        model_folder=model,
        scratch=folder / "scratch",
        checkpoint=folder / "checkpoint",
        log_path=folder / "attempt.log",
        grace_seconds=5,
        supervisors=supervisors,
    )
    return timed_attempt(process, folder)


def _by_hand(folder: Path) -> float:
    (folder / "outputs").mkdir(parents=True)
    (folder / "params.json").write_text('{"n": 21}')
    (folder / "outputs").chmod(0o777)
    command = [
        "podman", "run", "--rm", "--network", "none", "--init",
        "--volume", f"{folder / 'params.json'}:/modelrunner/params.json:ro",
        "--volume", f"{folder / 'outputs'}:/modelrunner/outputs",
        "--env", "MODELRUNNER_PARAMS=/modelrunner/params.json",
        "--env", "MODELRUNNER_OUTPUTS=/modelrunner/outputs",
        IMAGE,
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started
