"""Figure: a Jupyter notebook as a model, in the benchmark process (an attempt is the same code on
every runner): what an attempt adds to running the notebook with papermill and rendering it with
nbconvert by hand, measured in the same run.

- attempt: ``AttemptProcess.run`` of ``notebook: model.ipynb`` (the scratch folder, the model
  copy, params.json, the supervisor, the notebook runner: papermill with the parameters and the
  contract's folders injected, cell-by-cell progress, the executed notebook and its HTML written
  to the outputs folder, which are collected);
- by hand: ``papermill model.ipynb out.ipynb -p n 21`` then ``jupyter nbconvert --to html
  out.ipynb``, each with this interpreter, which is what the attempt's outputs hold too.

The notebook reads one parameter and writes one output.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

from attempts import bench_job, timed_attempt
from harness import Bench
from report import Figure, median, ms, secs

from modelrunner.execution.process import AttemptProcess
from modelrunner.execution.supervision import SupervisorService

SAMPLES = 7


def _notebook() -> dict[str, object]:
    def cell(source: str, tags: list[str] | None = None) -> dict[str, object]:
        metadata = {"tags": tags} if tags else {}
        return {"cell_type": "code", "execution_count": None, "metadata": metadata, "outputs": [], "source": source}

    cells = [
        cell('n = 1\nmodelrunner_outputs = "."', ["parameters"]),
        cell('from pathlib import Path\n(Path(modelrunner_outputs) / "doubled.txt").write_text(str(n * 2))'),
    ]
    for index, each in enumerate(cells):
        each["id"] = f"cell-{index}"
    kernel = {"display_name": "Python 3", "language": "python", "name": "python3"}
    return {"cells": cells, "metadata": {"kernelspec": kernel}, "nbformat": 4, "nbformat_minor": 5}


def measure(bench: Bench) -> list[Figure]:
    if importlib.util.find_spec("papermill") is None:
        missing = "papermill is not installed: pip install -e '.[notebook]'"
        return [Figure("notebook as a model", missing, "-", "-", "-", None)]
    folder = bench.scratch / "notebook-model"
    folder.mkdir(parents=True)
    (folder / "model.ipynb").write_text(json.dumps(_notebook()))
    samples = 3 if bench.quick else SAMPLES
    supervisors = SupervisorService()
    attempts: list[float] = []
    by_hand: list[float] = []
    try:
        for n in range(samples):  # taken in turns: the machine's load moves both alike
            attempts.append(_attempt(supervisors, folder, bench.scratch / f"nb-a{n}"))
            by_hand.append(_by_hand(folder, bench.scratch / f"nb-h{n}"))
    finally:
        supervisors.close()
    attempt, direct = median(attempts), median(by_hand)
    sign = "+" if attempt >= direct else "-"
    return [
        Figure(
            name="notebook as a model (papermill, with its HTML)",
            measured=f"attempt {secs(attempt)}",
            baseline=f"papermill + nbconvert by hand {secs(direct)}",
            compared=f"{sign}{ms(abs(attempt - direct))} ({attempt / direct:.2f}x)",
            target="-",
            met=None,
            notes=[
                f"medians of {samples}, taken in turns; both start the same interpreter's kernel; the attempt "
                "renders the HTML in the runner's process (its exporter warmed while the kernel starts), by hand "
                "it is a second command"
            ],
        )
    ]


def _attempt(supervisors: SupervisorService, model: Path, folder: Path) -> float:
    process = AttemptProcess(
        bench_job(notebook="model.ipynb"),
        model_folder=model,
        scratch=folder / "scratch",
        checkpoint=folder / "checkpoint",
        log_path=folder / "attempt.log",
        grace_seconds=5,
        supervisors=supervisors,
    )
    return timed_attempt(process, folder)


def _by_hand(model: Path, folder: Path) -> float:
    folder.mkdir(parents=True)
    executed = folder / "model.ipynb"
    started = time.perf_counter()
    papermill = [sys.executable, "-m", "papermill", str(model / "model.ipynb"), str(executed), "-p", "n", "21"]
    subprocess.run([*papermill, "-p", "modelrunner_outputs", str(folder)], cwd=model, check=True, capture_output=True)
    render = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", str(executed)]
    subprocess.run(render, check=True, capture_output=True)
    return time.perf_counter() - started
