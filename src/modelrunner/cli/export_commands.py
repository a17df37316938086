"""``modelrunner export``: where each schedule item, trigger and the on-demand runs of every model
stand, and their runtimes, as a table, JSON or CSV (a file to commit to git, as cron VMs did)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from modelrunner import units
from modelrunner.cli import options, output
from modelrunner.cli.client import Client

export_app = typer.Typer(
    help="Export the status and runtimes of each model's schedule items, triggers and on-demand runs: "
    "a table, JSON, or CSV to keep in git."
)

ModelFilter = Annotated[
    str | None, typer.Option("--model", "-m", envvar="MODELRUNNER_MODEL", help="Only this model's rows.")
]
ScheduleFilter = Annotated[
    str | None,
    typer.Option(
        "--schedule",
        envvar="MODELRUNNER_SCHEDULE",
        help="Only the items of this schedule: MODEL/SCHEDULE, or a schedule name of any model.",
    ),
]
Csv = Annotated[
    bool,
    typer.Option("--csv", envvar="MODELRUNNER_CSV", help="Write CSV (a header row, one line per row), not a table."),
]
OutputFile = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        envvar="MODELRUNNER_EXPORT_OUTPUT",
        dir_okay=False,
        help="Write to this file instead of stdout (CSV unless --json). It is replaced whole, "
        "and only once the export has succeeded.",
    ),
]

_ATTENTION = frozenset({"failed", "timed_out"})


@export_app.command("status")
def status(
    model: ModelFilter = None,
    schedule: ScheduleFilter = None,
    csv_output: Csv = False,
    output_file: OutputFile = None,
    json_output: options.Json = False,
    server: options.Server = options.DEFAULT,
) -> None:
    """Per model, one row per schedule item, per trigger and for the on-demand runs: the last run and
    how it ended, the last success, and counts of succeeded (computed), cache hits, failed, timed
    out and cancelled runs. Schedule items that never ran are rows too."""
    rows = _export("status", model, schedule, csv_output, output_file, json_output, server)
    if rows is None:
        return
    columns = ("model", "runs of", "last run", "status", "at", "last success")
    table = output.table(*columns, "succeeded", "hits", "failed", "timed out", "cancelled")
    for row in rows:
        success = row["last_success_run_id"]
        table.add_row(
            output.cell(row["model"]),
            output.cell(_source(row)),
            str(row["last_run_id"]) if row["last_run_id"] is not None else "never",
            output.status(row["last_status"] or ""),
            output.when(row["last_finished_at"] or row["last_started_at"]),
            f"{success} ({output.when(row['last_success_at'])})" if success is not None else "",
            str(row["succeeded"]),
            str(row["cache_hits"]),
            str(row["failed"]),
            str(row["timed_out"]),
            str(row["cancelled"]),
        )
    output.stdout().print(table)
    for row in rows:
        if row["last_status"] in _ATTENTION:
            reason = row["last_error"] or "no reason given"
            output.hint(f"{row['model']} {_source(row)}: run {row['last_run_id']} {row['last_status']}: {reason}")
    if not rows:
        output.hint("no runs yet: start one with `modelrunner run MODEL`")


@export_app.command("runtimes")
def runtimes(
    model: ModelFilter = None,
    schedule: ScheduleFilter = None,
    csv_output: Csv = False,
    output_file: OutputFile = None,
    json_output: options.Json = False,
    server: options.Server = options.DEFAULT,
) -> None:
    """Per model, one row per schedule item, per trigger and for the on-demand runs: the runtime (first
    start to end, in seconds) of the newest succeeded run that computed its whole result, of the one
    before it, their ratio, and the mean over all of them. Cache hits and pipeline runs that reused
    some steps' results (partial reruns) have no runtime: they are counted apart."""
    rows = _export("runtimes", model, schedule, csv_output, output_file, json_output, server)
    if rows is None:
        return
    table = output.table("model", "runs of", "runs", "current", "previous", "change", "mean", "not timed")
    for row in rows:
        table.add_row(
            output.cell(row["model"]),
            output.cell(_source(row)),
            str(row["runs"]),
            units.duration(row["current_runtime_s"]),
            units.duration(row["previous_runtime_s"]),
            f"{row['change'] - 1:+.0%}" if row["change"] is not None else "",
            units.duration(row["mean_runtime_s"]),
            _not_timed(row),
        )
    output.stdout().print(table)
    if not rows:
        output.hint("no runs yet: start one with `modelrunner run MODEL`")


def _not_timed(row: dict[str, Any]) -> str:
    """The succeeded runs left out of a row's runtimes, and why."""
    said = [
        f"{count} {what}"
        for count, what in ((row.get("cache_hits", 0), "cache hits"), (row.get("partial_runs", 0), "partial reruns"))
        if count
    ]
    return ", ".join(said)


def _export(
    kind: str,
    model: str | None,
    schedule: str | None,
    csv_output: bool,
    output_file: Path | None,
    json_output: bool,
    server: str,
) -> list[dict[str, Any]] | None:
    """The rows to show as a table; None when the export was written as CSV or JSON instead."""
    if csv_output and json_output:
        raise typer.BadParameter("--csv and --json are two formats; choose one", param_hint="--csv")
    with Client(server) as client:
        if json_output:
            text = json.dumps(client.export_rows(kind, model, schedule), indent=2, ensure_ascii=False) + "\n"
        elif csv_output or output_file is not None:
            text = client.export_csv(kind, model, schedule)
        else:
            return client.export_rows(kind, model, schedule)
    if output_file is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        _replace(output_file, text)
    return None


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to a file beside ``path``, then rename it over ``path``: a reader (or a git
    commit) sees the old file or the new one, never half of one."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8", newline="")
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise typer.BadParameter(f"cannot write {path}: {exc.strerror or exc}", param_hint="--output") from exc


def _source(row: dict[str, Any]) -> str:
    """``on demand``, ``noop/daily #0`` or ``trigger noop/fresh-data``."""
    if row["schedule"] is not None:
        return f"{row['schedule']} #{row['item']}" if row["item"] is not None else row["schedule"]
    if row["trigger"] is not None:
        return f"trigger {row['trigger']}"
    return "on demand"
