"""Step ``publish`` of the daily_estimates pipeline: a report people can open.

Reads ``$MODELRUNNER_INPUTS/summarise/summary.json`` and ``summary.csv`` and writes
``report.html``, a static page, into its outputs. When the server runs with
``DAILY_ESTIMATES_PUBLISH_DIR`` set (an absolute folder), it also publishes there: ``index.html``,
``summary.csv`` and ``summary.json``, each replaced whole, so a reader never sees half a file.
A report on older data never replaces one on newer data: when one sync finds several new versions,
their pipelines may publish in any order. The step is marked ``publish: true``, so a server with
the ``test`` profile leaves it out.
"""

from __future__ import annotations

import contextlib
import fcntl
import html
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelrunner import job

PUBLISH_DIR = "DAILY_ESTIMATES_PUBLISH_DIR"
TREND_COLOURS = {"growing": "#b2182b", "stable": "#6b6b6b", "declining": "#2166ac"}


def report(summary: dict[str, Any]) -> str:
    """The page: a title naming the last day of data, and one row per region."""
    rows = "\n".join(
        "      <tr>"
        f"<td>{html.escape(row['region'])}</td>"
        f"<td class=num>{row['rt']:.2f}</td>"
        f"<td class=num>{row['rt_lower']:.2f} to {row['rt_upper']:.2f}</td>"
        f"<td style='color:{TREND_COLOURS.get(row['trend'], 'black')}'>{html.escape(row['trend'])}</td>"
        f"<td class=num>{row['last_window_cases']}</td>"
        f"<td class=num>{row['previous_window_cases']}</td>"
        "</tr>"
        for row in summary["regions"]
    )
    params = summary["params"]
    window = int(params["window"])
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Daily estimates: data through {summary["data_through"]}</title>
  <style>
    body {{ font-family: system-ui, sans-serif; margin: 2rem; }}
    table {{ border-collapse: collapse; }}
    th, td {{ padding: 0.3rem 0.8rem; border-bottom: 1px solid #ddd; text-align: left; }}
    td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
  </style>
</head>
<body>
  <h1>Reproduction number by region</h1>
  <p>Data through {summary["data_through"]}. Cases of the last {window} days compared with the
  {window} days before, generation time {params["generation_time"]} days; 95% intervals.
  Computed under the profile {html.escape(os.environ.get("MODELRUNNER_PROFILE", "(none)"))}.</p>
  <table>
    <thead>
      <tr><th>region</th><th>Rt</th><th>95% interval</th><th>trend</th>
      <th>cases, last {window} days</th><th>cases, {window} days before</th></tr>
    </thead>
    <tbody>
{rows}
    </tbody>
  </table>
</body>
</html>
"""


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the folder's lock: publish steps of concurrent pipelines take turns."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def published_through(folder: Path) -> str | None:
    """The last day of data of the report published in ``folder``, if there is one."""
    try:
        return str(json.loads((folder / "summary.json").read_text(encoding="utf-8"))["data_through"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def publish(files: dict[str, Path], folder: Path) -> None:
    """Copy each file to ``folder/<name>``, replacing the old one in a single rename."""
    for name, source in files.items():
        partial = folder / f".{name}.partial"
        shutil.copyfile(source, partial)
        os.replace(partial, folder / name)


def main() -> None:
    try:
        inputs, outputs = job.inputs(), job.outputs()
    except (RuntimeError, OSError) as error:
        sys.exit(f"publish: {error}\nRun it through modelrunner: `modelrunner run daily_estimates --wait`.")
    target = os.environ.get(PUBLISH_DIR)
    if target and not Path(target).is_absolute():
        sys.exit(f"publish: {PUBLISH_DIR}={target!r} must be an absolute path (the step runs in a scratch folder)")
    summary_json = inputs / "summarise" / "summary.json"
    if not summary_json.is_file():
        sys.exit(f"publish: {summary_json} is missing; the summarise step wrote nothing")
    summary = json.loads(summary_json.read_text(encoding="utf-8"))

    job.progress(0.2, f"writing the report for data through {summary['data_through']}")
    outputs.mkdir(parents=True, exist_ok=True)
    page = outputs / "report.html"
    page.write_text(report(summary), encoding="utf-8")
    if not target:
        job.progress(1.0, f"report.html written; set {PUBLISH_DIR} on the server to publish it to a folder")
        return
    folder = Path(target)
    with locked(folder):
        current = published_through(folder)
        if current is not None and current > summary["data_through"]:
            job.progress(1.0, f"kept the report published in {target}: its data is newer (through {current})")
            return
        publish(
            {"index.html": page, "summary.csv": inputs / "summarise" / "summary.csv", "summary.json": summary_json},
            folder,
        )
    job.progress(1.0, f"published the report for data through {summary['data_through']} to {target}")


if __name__ == "__main__":
    main()
