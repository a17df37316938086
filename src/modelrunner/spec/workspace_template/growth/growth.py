"""Logistic population growth, the example model of a new workspace.

Reads its parameters from modelrunner, computes the population at every step and writes
``series.csv`` and ``summary.json`` to the outputs folder. Uses only the standard library.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

from modelrunner import job

PROGRESS_REPORTS = 10


def logistic(initial: float, rate: float, capacity: float, step: int) -> float:
    """The population after ``step`` steps of logistic growth."""
    # The closed-form solution stays exact and stable for any rate, unlike stepping an update rule.
    return capacity / (1.0 + (capacity / initial - 1.0) * math.exp(-rate * step))


def project(params: dict[str, Any]) -> list[float]:
    """The population at steps 0 to ``steps``, reporting progress along the way."""
    steps = int(params["steps"])
    report_every = math.ceil(steps / PROGRESS_REPORTS)
    series = [float(params["initial"])]
    for step in range(1, steps + 1):
        series.append(logistic(params["initial"], params["rate"], params["capacity"], step))
        if step % report_every == 0 or step == steps:
            job.progress(0.9 * step / steps, f"step {step} of {steps}: population {series[-1]:,.1f}")
    return series


def write_series(path: Path, series: list[float]) -> None:
    """Write one CSV row per step: the population and its change since the previous step."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "population", "change"])
        previous = series[0]
        for step, population in enumerate(series):
            writer.writerow([step, f"{population:.4f}", f"{population - previous:.4f}"])
            previous = population


def summarize(series: list[float], params: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of the projection, with the parameters that produced it."""
    capacity = float(params["capacity"])
    half_capacity_step = next((step for step, population in enumerate(series) if population >= capacity / 2), None)
    return {
        "final_population": round(series[-1], 4),
        "fraction_of_capacity": round(series[-1] / capacity, 6),
        "half_capacity_step": half_capacity_step,
        "params": params,
    }


def main() -> None:
    """Run the projection from modelrunner's environment and write the outputs."""
    try:
        params = job.params()
        outputs = job.outputs()
    except (RuntimeError, OSError) as error:
        sys.exit(f"growth: {error}\nRun it through modelrunner: `modelrunner run growth --local`.")

    job.progress(0.0, f"projecting {params['steps']} steps from a population of {params['initial']:,}")
    series = project(params)

    job.progress(0.95, "writing series.csv and summary.json")
    outputs.mkdir(parents=True, exist_ok=True)
    write_series(outputs / "series.csv", series)
    summary = summarize(series, params)
    (outputs / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    job.progress(
        1.0,
        f"done: {summary['final_population']:,.1f} at step {params['steps']} "
        f"({summary['fraction_of_capacity']:.0%} of capacity)",
    )


if __name__ == "__main__":
    main()
