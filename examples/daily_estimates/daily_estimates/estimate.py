"""Step ``estimate`` of the daily_estimates pipeline: the reproduction number of one region.

The region comes as JSON in ``MODELRUNNER_ITEM`` (one run per top-level folder of the data); its
counts are ``$MODELRUNNER_INPUTS/cases/<region>/cases.csv`` (date, new_cases). Writes
``estimate.json`` and ``estimate.csv``.

The estimate: with ``last`` the cases of the final ``window`` days and ``previous`` those of the
``window`` days before, exponential growth at a daily rate r makes last / previous = exp(r x
window), so r = ln(last / previous) / window. With a generation time Tg, Rt = exp(r x Tg). Counts
are treated as Poisson, so ln(last / previous) has a standard error of sqrt(1/last + 1/previous);
that gives a 95% interval for r and Rt. The trend is ``growing`` when the whole interval of Rt
lies above 1, ``declining`` when it lies below 1, ``stable`` otherwise.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from modelrunner import job

CASES_FILE = "cases.csv"
OFFSET = 0.5  # added to both totals, so a period without cases still gives a finite ratio
Z_95 = 1.96  # normal quantile of a two-sided 95% interval


def region_of_item() -> str:
    raw = os.environ.get("MODELRUNNER_ITEM")
    if raw is None:
        sys.exit("estimate: MODELRUNNER_ITEM is not set; this step runs once per region under modelrunner")
    region = json.loads(raw)
    if not isinstance(region, str):
        sys.exit(f"estimate: expected a region name as MODELRUNNER_ITEM, got {raw}")
    return region


def read_series(path: Path) -> tuple[list[dt.date], np.ndarray]:
    """Dates (ascending, one row per day) and their counts; exits naming the line of bad data."""
    if not path.is_file():
        sys.exit(f"estimate: {path} is missing: each region folder of the data must hold {CASES_FILE}")
    rows: dict[dt.date, int] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"date", "new_cases"} <= set(reader.fieldnames):
            sys.exit(f"estimate: {path.parent.name}/{CASES_FILE} must have the columns date, new_cases")
        for row in reader:
            try:
                date, cases = dt.date.fromisoformat(row["date"]), int(row["new_cases"])
            except ValueError as error:
                sys.exit(f"estimate: {path.parent.name}/{CASES_FILE} line {reader.line_num}: {error}")
            if cases < 0:
                sys.exit(f"estimate: {path.parent.name}/{CASES_FILE} line {reader.line_num}: negative count {cases}")
            rows[date] = cases
    dates = sorted(rows)
    if dates and (dates[-1] - dates[0]).days + 1 != len(dates):
        sys.exit(f"estimate: {path.parent.name}/{CASES_FILE} skips days; every day needs a row (0 for none)")
    return dates, np.array([rows[date] for date in dates], dtype=float)


def estimate(cases: np.ndarray, window: int, generation_time: float) -> dict[str, Any]:
    """Growth rate, Rt and its interval from the last two periods of ``window`` days."""
    last, previous = float(cases[-window:].sum()), float(cases[-2 * window : -window].sum())
    log_ratio = math.log((last + OFFSET) / (previous + OFFSET))
    spread = Z_95 * math.sqrt(1 / (last + OFFSET) + 1 / (previous + OFFSET))
    rate, rate_low, rate_high = (value / window for value in (log_ratio, log_ratio - spread, log_ratio + spread))
    rt, rt_low, rt_high = (math.exp(value * generation_time) for value in (rate, rate_low, rate_high))
    trend = "growing" if rt_low > 1 else "declining" if rt_high < 1 else "stable"
    return {
        "last_window_cases": int(last),
        "previous_window_cases": int(previous),
        "growth_rate_per_day": round(rate, 5),
        "rt": round(rt, 4),
        "rt_interval": [round(rt_low, 4), round(rt_high, 4)],
        "trend": trend,
    }


def main() -> None:
    region = region_of_item()
    try:
        params, inputs, outputs = job.params(), job.inputs(), job.outputs()
    except (RuntimeError, OSError) as error:
        sys.exit(f"estimate: {error}\nRun it through modelrunner: `modelrunner run daily_estimates --wait`.")
    window, generation_time = int(params["window"]), float(params["generation_time"])

    job.progress(0.1, f"{region}: reading {CASES_FILE}")
    dates, cases = read_series(inputs / "cases" / region / CASES_FILE)
    if len(dates) < 2 * window:
        sys.exit(f"estimate: {region} has {len(dates)} day(s) of data; a window of {window} needs {2 * window}")

    job.progress(0.5, f"{region}: fitting, last {window} days against the {window} before")
    result = {
        "region": region,
        "data_from": dates[0].isoformat(),
        "data_through": dates[-1].isoformat(),
        "window": window,
        "generation_time_days": generation_time,
        **estimate(cases, window, generation_time),
    }

    outputs.mkdir(parents=True, exist_ok=True)
    (outputs / "estimate.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    # Trailing mean over `window` days: the smoothed curve a reader compares the estimate with.
    means = np.convolve(cases, np.ones(window) / window, mode="valid")
    with (outputs / "estimate.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["date", "new_cases", f"mean_{window}d"])
        for index, (date, count) in enumerate(zip(dates, cases, strict=True)):
            mean = f"{means[index - window + 1]:.2f}" if index >= window - 1 else ""
            writer.writerow([date.isoformat(), int(count), mean])
    low, high = result["rt_interval"]
    job.progress(1.0, f"{region}: Rt {result['rt']:.2f} ({low:.2f} to {high:.2f}), {result['trend']}")


if __name__ == "__main__":
    main()
