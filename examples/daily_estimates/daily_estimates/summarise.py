"""Step ``summarise`` of the daily_estimates pipeline: every region's estimate in one table.

Reads ``$MODELRUNNER_INPUTS/estimate/<region>/estimate.json`` (the outputs of the ``estimate``
runs, one folder per region) and writes ``summary.csv`` (one row per region) and ``summary.json``
(the same rows, the parameters, and how many regions have each trend).
"""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter
from typing import Any

from modelrunner import job

COLUMNS = [
    "region",
    "data_through",
    "last_window_cases",
    "previous_window_cases",
    "growth_rate_per_day",
    "rt",
    "rt_lower",
    "rt_upper",
    "trend",
]


def main() -> None:
    try:
        params, inputs, outputs = job.params(), job.inputs(), job.outputs()
    except (RuntimeError, OSError) as error:
        sys.exit(f"summarise: {error}\nRun it through modelrunner: `modelrunner run daily_estimates --wait`.")
    files = sorted((inputs / "estimate").glob("*/estimate.json"))
    if not files:
        sys.exit(f"summarise: no estimate.json under {inputs / 'estimate'}; the estimate step wrote nothing")
    job.progress(0.1, f"reading {len(files)} estimates")

    rows: list[dict[str, Any]] = []
    for file in files:
        found = json.loads(file.read_text(encoding="utf-8"))
        low, high = found["rt_interval"]
        rows.append({**{key: found[key] for key in COLUMNS if key in found}, "rt_lower": low, "rt_upper": high})
    rows.sort(key=lambda row: row["region"])

    outputs.mkdir(parents=True, exist_ok=True)
    with (outputs / "summary.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    trends = Counter(row["trend"] for row in rows)
    summary = {
        "data_through": max(row["data_through"] for row in rows),
        "params": params,
        "trends": {trend: trends.get(trend, 0) for trend in ("growing", "stable", "declining")},
        "regions": rows,
    }
    (outputs / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    shown = ", ".join(f"{count} {trend}" for trend, count in summary["trends"].items() if count)
    job.progress(1.0, f"{len(rows)} regions up to {summary['data_through']}: {shown}")


if __name__ == "__main__":
    main()
