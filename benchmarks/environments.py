"""Figure: a model's own environment (``environment: requirements.txt``), built cold and reused
warm, in the benchmark process (no server: the build is the same code on every runner).

- cold: ``Environments.prepare`` of a requirements file never built before (a venv of this
  interpreter, then ``uv pip install -r`` from PyPI with an empty cache), beside the same two uv
  commands typed by hand in the same run;
- changed file: a new environment whose packages the machine's package cache holds (a model
  version with an edited requirements file);
- warm: ``prepare`` of an environment built before (what every later attempt, run and model
  version that shares the file pays), beside starting ``python -c pass`` (the cheapest model).

Each requirements file is new to the run (a comment with a random tag), so nothing is reused
from another run; the downloads come from PyPI, so the cold figures depend on the network (a
first install by hand, not counted, warms whatever caches downloads on the way).
"""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import uv
from harness import Bench
from report import Figure, median, ms, secs

from modelrunner.execution.environments import Environments

SMALL = "pyjokes==0.8.3\n"  # pure Python, one wheel
NOTEBOOK = "papermill\nipykernel\nnbconvert\nnumpy\n"  # what a notebook model's environment holds
WARM_SAMPLES = 20


def measure(bench: Bench) -> list[Figure]:
    figures = [_figure(bench, "small (pyjokes)", SMALL)]
    if not bench.quick:
        figures.append(_figure(bench, "notebook (papermill, ipykernel, nbconvert, numpy)", NOTEBOOK))
    return figures


def _figure(bench: Bench, label: str, requirements: str) -> Figure:
    tag = secrets.token_hex(4)
    folder = bench.scratch / f"model-{tag}"
    folder.mkdir(parents=True)
    (folder / "requirements.txt").write_text(f"{requirements}# {tag}\n")
    environments = Environments(bench.scratch / f"environments-{tag}")  # an empty package cache
    # Once by hand first, thrown away: whatever caches downloads on the way (a proxy) is then as
    # warm for both measured builds, whose own uv caches are empty.
    _uv_by_hand(bench.scratch / f"first-{tag}", folder / "requirements.txt")

    started = time.perf_counter()
    environments.prepare(folder, "requirements.txt", os.environ, (), io.BytesIO())
    cold = time.perf_counter() - started
    by_hand = _uv_by_hand(bench.scratch / f"by-hand-{tag}", folder / "requirements.txt")
    warm = median([_timed_prepare(environments, folder) for _ in range(WARM_SAMPLES)])
    # A changed file (a new model version) whose packages the machine's cache holds already.
    (folder / "requirements.txt").write_text(f"{requirements}# {tag} changed\n")
    cached = _timed_prepare(environments, folder)
    start_python = median([_timed([sys.executable, "-c", "pass"]) for _ in range(5)])
    return Figure(
        name=f"environment build, {label}",
        measured=f"cold {secs(cold)}, changed file {secs(cached)}, warm {ms(warm)}",
        baseline=f"uv by hand {secs(by_hand)}; python -c pass {ms(start_python)}",
        compared=f"cold {cold / by_hand:.2f}x by hand; warm {warm / start_python:.2f}x a python start",
        target="-",
        met=None,
        notes=[
            "cold: a venv and `uv pip install -r` with an empty uv cache, downloads from PyPI; changed file: "
            "the same packages, another requirements file (a new environment), the packages cached"
        ],
    )


def _uv_by_hand(folder: Path, requirements: Path) -> float:
    binary = uv.find_uv_bin()
    env = {**os.environ, "UV_CACHE_DIR": str(folder / "cache"), "UV_SYSTEM_CERTS": "1", "UV_NATIVE_TLS": "1"}
    started = time.perf_counter()
    subprocess.run([binary, "venv", "-q", "--python", sys.executable, str(folder / "env")], env=env, check=True)
    subprocess.run(
        [binary, "pip", "install", "-q", "--python", str(folder / "env" / "bin" / "python"), "-r", str(requirements)],
        env=env,
        check=True,
    )
    return time.perf_counter() - started


def _timed_prepare(environments: Environments, folder: Path) -> float:
    started = time.perf_counter()
    environments.prepare(folder, "requirements.txt", os.environ, (), io.BytesIO())
    return time.perf_counter() - started


def _timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started
