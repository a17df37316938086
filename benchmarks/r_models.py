"""Figure: an R script as a model, in the benchmark process (an attempt is the same code on every
runner): what an attempt adds to starting the script with ``Rscript`` by hand, measured in the
same run.

- attempt: ``AttemptProcess.run`` of ``command: [Rscript, model.R]`` (the scratch folder, the
  model copy, params.json, the supervisor, the output follower, the outputs collected), the R
  helper installed already, as every R run after a machine's first finds it;
- first attempt: the same on a machine that has not installed the R helper yet (``R CMD INSTALL``
  of the shipped package, once per machine, helper and R version);
- by hand: ``Rscript model.R`` with the same contract variables and the helper on ``R_LIBS``.

The script loads the helper, reads its parameters, reports progress and writes one output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from attempts import bench_job, timed_attempt
from harness import Bench
from report import Figure, median, ms, secs

from modelrunner.execution.environments import Environments
from modelrunner.execution.process import AttemptProcess
from modelrunner.execution.r_helper import R_HELPER_FOLDER, RHelper
from modelrunner.execution.supervision import SupervisorService

SCRIPT = """library(modelrunner)
p <- params()
progress(0.5, "half way")
writeLines(as.character(p$n * 2), outputs("doubled.txt"))
"""
SAMPLES = 10


def measure(bench: Bench) -> list[Figure]:
    if shutil.which("Rscript") is None:
        return [Figure("R script as a model", "R is not installed", "-", "-", "-", None)]
    folder = bench.scratch / "r-model"
    folder.mkdir(parents=True)
    (folder / "model.R").write_text(SCRIPT)
    environments = bench.scratch / "r-environments"
    samples = 3 if bench.quick else SAMPLES
    supervisors = SupervisorService()
    attempts: list[float] = []
    by_hand: list[float] = []
    try:
        first = _attempt(supervisors, folder, environments, bench.scratch / "first")
        library = RHelper(environments / R_HELPER_FOLDER).library(os.environ.get("PATH", os.defpath))
        for n in range(samples):  # taken in turns: the machine's load moves both alike
            attempts.append(_attempt(supervisors, folder, environments, bench.scratch / f"r-a{n}"))
            by_hand.append(_by_hand(folder, library, bench.scratch / f"r-h{n}"))
    finally:
        supervisors.close()
    attempt, direct = median(attempts), median(by_hand)
    sign = "+" if attempt >= direct else "-"
    return [
        Figure(
            name="R script as a model (Rscript, library(modelrunner))",
            measured=f"attempt {ms(attempt)}; a machine's first {secs(first)}",
            baseline=f"Rscript by hand {ms(direct)}",
            compared=f"{sign}{ms(abs(attempt - direct))} ({attempt / direct:.2f}x)",
            target="-",
            met=None,
            notes=[
                f"medians of {samples}, taken in turns; the first attempt installs the R helper (R CMD "
                "INSTALL), once per machine, helper and R version"
            ],
        )
    ]


def _attempt(supervisors: SupervisorService, model: Path, environments: Path, folder: Path) -> float:
    process = AttemptProcess(
        bench_job(command=["Rscript", "model.R"]),
        model_folder=model,
        scratch=folder / "scratch",
        checkpoint=folder / "checkpoint",
        log_path=folder / "attempt.log",
        grace_seconds=5,
        supervisors=supervisors,
        environments=Environments(environments),  # the R helper is installed among them
    )
    return timed_attempt(process, folder)


def _by_hand(model: Path, library: Path, folder: Path) -> float:
    (folder / "outputs").mkdir(parents=True)
    (folder / "params.json").write_text('{"n": 21}')
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "R_LIBS": str(library),
        "MODELRUNNER_PARAMS": str(folder / "params.json"),
        "MODELRUNNER_OUTPUTS": str(folder / "outputs"),
    }
    started = time.perf_counter()
    subprocess.run(["Rscript", "model.R"], cwd=model, env=env, check=True, capture_output=True)
    return time.perf_counter() - started
