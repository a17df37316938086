"""Short-term projection of daily cases per region, the casecounts example model.

Reads ``cases.csv`` (date, region, new_cases) from the ``cases`` input, fits a log-linear trend
(constant exponential growth or decline) to each region's last ``window`` days, and extends it
``horizon`` days ahead with an approximate 95% prediction interval. Writes ``projection.csv`` and
``summary.json``. Which data version it reads is chosen by modelrunner and recorded with the run;
the model itself never needs to know it.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelrunner import job

CASES_FILE = "cases.csv"
COLUMNS = ("date", "region", "new_cases")
# Added to every count before taking its logarithm, so that a day with zero cases can be fitted.
OFFSET = 0.5
Z_95 = 1.96  # normal quantile of a two-sided 95% interval
MIN_POINTS = 3  # a line and a residual spread need at least three days


@dataclass(frozen=True)
class Fit:
    """A straight line through log(cases + OFFSET) against days relative to the last day of data."""

    slope: float  # growth rate per day (negative when cases decline)
    intercept: float
    residual_sd: float
    points: int
    mean_x: float
    spread_x: float  # sum of squared deviations of x from its mean

    def slope_interval(self) -> tuple[float, float]:
        half = Z_95 * self.residual_sd / math.sqrt(self.spread_x)
        return self.slope - half, self.slope + half

    def predict(self, day: float) -> tuple[float, float, float]:
        """Cases on ``day`` (days after the last day of data): central value, lower, upper.

        The interval is the usual prediction interval of a linear regression, on the log scale:
        it widens with the residual spread and with the distance from the fitted days.
        """
        centre = self.intercept + self.slope * day
        se = self.residual_sd * math.sqrt(1 + 1 / self.points + (day - self.mean_x) ** 2 / self.spread_x)
        return from_log(centre), from_log(centre - Z_95 * se), from_log(centre + Z_95 * se)


def from_log(log_value: float) -> float:
    """Back from the log scale to a count (never below zero)."""
    return max(math.exp(log_value) - OFFSET, 0.0)


def read_cases(path: Path) -> dict[str, dict[dt.date, int]]:
    """Region -> date -> new cases; exits with a message naming the line for malformed data."""
    if not path.is_file():
        sys.exit(f"projection: {path} is missing: the `cases` input must provide {CASES_FILE}")
    series: dict[str, dict[dt.date, int]] = defaultdict(dict)
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [column for column in COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            sys.exit(f"projection: {CASES_FILE} lacks the column(s) {', '.join(missing)}")
        for row in reader:
            try:
                date = dt.date.fromisoformat(row["date"])
                cases = int(row["new_cases"])
            except ValueError as error:
                sys.exit(f"projection: {CASES_FILE} line {reader.line_num}: {error}")
            if cases < 0:
                sys.exit(f"projection: {CASES_FILE} line {reader.line_num}: negative new_cases {cases}")
            series[row["region"]][date] = cases
    if not series:
        sys.exit(f"projection: {CASES_FILE} has no data rows")
    return dict(series)


def fit(days: list[int], cases: list[int]) -> Fit:
    x = np.asarray(days, dtype=float)
    y = np.log(np.asarray(cases, dtype=float) + OFFSET)
    slope, intercept = np.polyfit(x, y, 1)
    residuals = y - (intercept + slope * x)
    return Fit(
        slope=float(slope),
        intercept=float(intercept),
        residual_sd=float(np.sqrt(np.sum(residuals**2) / (len(x) - 2))),
        points=len(x),
        mean_x=float(x.mean()),
        spread_x=float(np.sum((x - x.mean()) ** 2)),
    )


def describe_trend(rate: float) -> str:
    if rate > 0:
        return f"growing {rate:.1%}/day, doubling every {math.log(2) / rate:.1f} days"
    if rate < 0:
        return f"declining {-rate:.1%}/day, halving every {math.log(2) / -rate:.1f} days"
    return "flat"


def project_region(
    region: str, counts: dict[dt.date, int], data_through: dt.date, window: int, horizon: int
) -> tuple[list[list[Any]], dict[str, Any], Fit]:
    """The CSV rows (observed history, then projected days) and the summary of one region."""
    fit_from = data_through - dt.timedelta(days=window - 1)
    recent = sorted(date for date in counts if date >= fit_from)
    if len(recent) < MIN_POINTS:
        sys.exit(f"projection: region {region!r} has {len(recent)} day(s) of data since {fit_from}; need {MIN_POINTS}")
    line = fit([(date - data_through).days for date in recent], [counts[date] for date in recent])

    rows: list[list[Any]] = [[date.isoformat(), region, "observed", counts[date], "", ""] for date in sorted(counts)]
    for day in range(1, horizon + 1):
        centre, lower, upper = line.predict(day)
        date = data_through + dt.timedelta(days=day)
        rows.append([date.isoformat(), region, "projected", f"{centre:.1f}", f"{lower:.1f}", f"{upper:.1f}"])

    rate_low, rate_high = line.slope_interval()
    last_date, _, _, last_cases, last_lower, last_upper = rows[-1]
    summary = {
        "growth_rate_per_day": round(line.slope, 5),
        "growth_rate_interval": [round(rate_low, 5), round(rate_high, 5)],
        # Only one of the two applies; the other is null rather than an infinite number.
        "doubling_time_days": round(math.log(2) / line.slope, 2) if line.slope > 0 else None,
        "halving_time_days": round(math.log(2) / -line.slope, 2) if line.slope < 0 else None,
        "fitted_days": line.points,
        "last_observed": {"date": recent[-1].isoformat(), "cases": counts[recent[-1]]},
        "projected_last_day": {
            "date": last_date,
            "cases": float(last_cases),
            "lower": float(last_lower),
            "upper": float(last_upper),
        },
    }
    return rows, summary, line


def main() -> None:
    try:
        params = job.params()
        inputs = job.inputs()
        outputs = job.outputs()
    except (RuntimeError, OSError) as error:
        sys.exit(f"projection: {error}\nRun it through modelrunner: `modelrunner run projection --wait`.")
    horizon, window, chosen = int(params["horizon"]), int(params["window"]), params["region"]

    job.progress(0.0, f"reading {CASES_FILE}")
    series = read_cases(inputs / "cases" / CASES_FILE)
    if chosen != "all" and chosen not in series:
        sys.exit(f"projection: region {chosen!r} is not in the data (it has: {', '.join(sorted(series))})")
    regions = sorted(series) if chosen == "all" else [chosen]
    # Every region is projected from the same day, the last day of the data as a whole, so the
    # projections line up; a region that reported nothing lately simply has fewer fitted points.
    data_from = min(min(counts) for counts in series.values())
    data_through = max(max(counts) for counts in series.values())
    rows_read = sum(len(counts) for counts in series.values())
    job.progress(0.1, f"{rows_read} rows, {len(series)} regions, {data_from} to {data_through}")

    rows: list[list[Any]] = []
    summaries: dict[str, Any] = {}
    for number, region in enumerate(regions, start=1):
        region_rows, summaries[region], line = project_region(region, series[region], data_through, window, horizon)
        rows += region_rows
        job.progress(0.1 + 0.8 * number / len(regions), f"{region}: {describe_trend(line.slope)}")

    job.progress(0.95, "writing projection.csv and summary.json")
    outputs.mkdir(parents=True, exist_ok=True)
    with (outputs / "projection.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["date", "region", "kind", "cases", "lower", "upper"])
        writer.writerows(rows)
    summary = {
        "data_through": data_through.isoformat(),
        "fit_from": (data_through - dt.timedelta(days=window - 1)).isoformat(),
        "projected_through": (data_through + dt.timedelta(days=horizon)).isoformat(),
        "interval": "approximate 95% prediction interval, assuming the fitted growth rate holds",
        "regions": summaries,
        "params": params,
    }
    (outputs / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    job.progress(1.0, f"projected {len(regions)} region(s) {horizon} days beyond {data_through}")


if __name__ == "__main__":
    main()
