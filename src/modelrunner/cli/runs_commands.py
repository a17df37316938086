"""``modelrunner runs``: list, inspect, follow, cancel runs on the server and fetch their outputs."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from modelrunner.cli import options, output
from modelrunner.cli.client import Client
from modelrunner.cli.run_view import (
    FINAL,
    outcome_line,
    outputs_table,
    print_details,
    report_submission,
    wait_and_report,
)
from modelrunner.engine.states import RunStatus
from modelrunner.store.row_ids import INT64_MAX

LOG_POLL_SECONDS = 0.5

runs_app = typer.Typer(help="List, inspect, follow and cancel runs on the server, and fetch their outputs.")

RunId = Annotated[
    int, typer.Argument(help="The run id (as `modelrunner run` and `runs list` show it).", min=1, max=INT64_MAX)
]


@runs_app.command("list")
def list_runs(
    model: Annotated[
        str | None, typer.Option("--model", "-m", envvar="MODELRUNNER_MODEL", help="Only runs of this model.")
    ] = None,
    status: Annotated[
        list[RunStatus] | None,
        typer.Option(
            "--status", "-s", envvar="MODELRUNNER_STATUS", help="Only runs in this status; repeat for several."
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option(envvar="MODELRUNNER_LIMIT", min=1, max=500, help="Show at most this many runs.")
    ] = 20,
    parent: Annotated[
        int | None,
        typer.Option(
            "--pipeline",
            "-p",
            envvar="MODELRUNNER_PIPELINE",
            min=1,
            max=INT64_MAX,
            help="The step runs of this pipeline run.",
        ),
    ] = None,
    submitter: Annotated[str | None, typer.Option(help="Only runs this user submitted.")] = None,
    backend: Annotated[str | None, typer.Option(help="Only runs routed to this backend.")] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=VALUE: only runs whose parameter has this value (r0=2 matches 2.0; "
            'a number, true, false or "quoted text" is matched as that, anything else as text); repeat for several.'
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            envvar="MODELRUNNER_SINCE",
            metavar="WHEN",
            help="Only runs submitted since: a time back from now (2d, 12h, 30m) or a date or time in UTC "
            "(2026-12-01, 2026-12-01T08:30).",
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(envvar="MODELRUNNER_UNTIL", metavar="WHEN", help="Only runs submitted before: as --since."),
    ] = None,
    json_output: options.Json = False,
    server: options.Server = options.DEFAULT,
) -> None:
    """List runs, newest first (the steps of a pipeline only with --pipeline).

    Example: `modelrunner runs list --param dataset=uk --status failed --since 2d`
    """
    statuses = [s.value for s in status or []]
    with Client(server) as client:
        runs = client.runs(
            limit,
            model=model,
            status=statuses,
            parent=parent,
            submitter=submitter,
            backend=backend,
            param=param,
            since=since,
            until=until,
        )
    if json_output:
        output.print_json(runs)
        return
    table = output.table("id", "model", "status", "cache hit", "progress", "created", "duration")
    for run in runs:
        table.add_row(
            str(run["id"]),
            output.cell(_what(run)),
            output.status(run["status"]),
            f"yes (run {run['source_run_id']})" if run["cache_hit"] else "",
            output.percent((run.get("progress") or {}).get("fraction")),
            output.when(run["created_at"]),
            output.duration(run["started_at"], run["finished_at"]),
        )
    output.stdout().print(table)
    if not runs and any((model, statuses, parent, submitter, backend, param, since, until)):
        output.hint("no runs match these filters")
    elif not runs:
        output.hint("no runs yet: start one with `modelrunner run MODEL`")


def _what(run: dict[str, Any]) -> str:
    if run.get("kind") == "pipeline":
        return f"{run['model']} (pipeline)"
    if run.get("step") is not None:
        item = f"[{run['item_key']}]" if run.get("item_key") is not None else ""
        return f"{run['model']}.{run['step']}{item}"
    return str(run["model"])


@runs_app.command("show")
def show(run_id: RunId, json_output: options.Json = False, server: options.Server = options.DEFAULT) -> None:
    """Show one run: status, parameters, progress, error, attempts and outputs."""
    with Client(server) as client:
        run = client.run(run_id)
    if json_output:
        output.print_json(run)
    else:
        print_details(output.stdout(), run)


@runs_app.command("logs")
def logs(
    run_id: RunId,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", envvar="MODELRUNNER_FOLLOW", help="Keep printing new lines until the run ends."),
    ] = False,
    all_steps: Annotated[
        bool,
        typer.Option(
            "--all-steps", envvar="MODELRUNNER_ALL_STEPS", help="Pipeline: every step's log, also when some failed."
        ),
    ] = False,
    server: options.Server = options.DEFAULT,
) -> None:
    """Print what the run's model printed (stdout and stderr of every attempt).

    For a cache hit, the log of the run that computed the result is shown. For a pipeline run,
    the log of each failing step, or of each step when none failed, under a header per step.
    """
    with Client(server) as client:
        run = client.run(run_id)
        if run.get("kind") == "pipeline":
            from modelrunner.cli.pipeline_logs import print_pipeline_logs

            print_pipeline_logs(client, run, every_step=all_steps, follow=follow)
            return
        if run.get("cache_hit") and run.get("source_run_id") is not None:
            output.hint(f"run {run_id} was answered from the cache; this is the log of run {run['source_run_id']}")
        offset = 0
        while True:
            chunk = client.logs(run_id, offset)
            if chunk.data:
                sys.stdout.buffer.write(chunk.data)
                sys.stdout.buffer.flush()
            offset = chunk.next_offset
            if offset < chunk.size:
                continue  # the server answers a page at a time: the rest is there already
            # The status is read before the log on the server, so a final status means all is here.
            if not follow or chunk.run_status in FINAL:
                return
            time.sleep(LOG_POLL_SECONDS)


@runs_app.command("rerun")
def rerun(
    run_id: RunId,
    from_step: Annotated[
        str | None,
        typer.Option(
            "--from", envvar="MODELRUNNER_FROM", help="Pipeline: compute this step and everything downstream again."
        ),
    ] = None,
    only: Annotated[
        str | None, typer.Option("--only", envvar="MODELRUNNER_ONLY", help="Pipeline: compute this step alone again.")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", "-w", envvar="MODELRUNNER_WAIT", help="Follow its progress until it ends.")
    ] = False,
    json_output: options.Json = False,
    server: options.Server = options.DEFAULT,
) -> None:
    """Compute a run again with the same parameters and data versions (the model's current code).

    A pipeline run reuses the results of every step it does not recompute.
    """
    with Client(server) as client:
        run = client.rerun(run_id, from_step, only)
        if not wait:
            report_submission(run, json_output)
            return
        final = wait_and_report(client, run, json_output)
    raise typer.Exit(0 if final["status"] == "succeeded" else 1)


@runs_app.command("explain")
def explain(run_id: RunId, json_output: options.Json = False, server: options.Server = options.DEFAULT) -> None:
    """Say why a run, or each step run of a pipeline run, was or was not answered from the cache:
    the run that answered it, or which parts of its key (a file, a parameter, an input, an
    upstream output, the profile) differ from the closest earlier run of the same step."""
    with Client(server) as client:
        found = client.explain(run_id)
    if json_output:
        output.print_json(found)
        return
    console = output.stdout()
    for entry in found["explanations"]:
        step = entry["step"] or found["model"]
        item = f"[{entry['item_key']}]" if entry["item_key"] is not None else ""
        console.print(f"run {entry['run']} {step}{item}: {entry['reason']}", markup=False, highlight=False)


@runs_app.command("cancel")
def cancel(run_id: RunId, server: options.Server = options.DEFAULT) -> None:
    """Cancel a queued or running run (the model gets SIGTERM, then SIGKILL after a grace period)."""
    with Client(server) as client:
        run = client.cancel(run_id)
    output.stdout().print(outcome_line(run))


@runs_app.command("outputs")
def outputs(
    run_id: RunId,
    download: Annotated[
        Path | None,
        typer.Option(
            envvar="MODELRUNNER_DOWNLOAD",
            file_okay=False,
            help="Save every output file into this folder, checking each file's sha256.",
        ),
    ] = None,
    partial: Annotated[
        bool,
        typer.Option(
            "--partial",
            envvar="MODELRUNNER_PARTIAL",
            help="The partial outputs instead: what each attempt that failed, timed out or was cancelled had "
            "written (never the run's result); --download saves them in attempt-N/ folders.",
        ),
    ] = False,
    attempt: Annotated[
        int | None,
        typer.Option(
            "--attempt",
            envvar="MODELRUNNER_ATTEMPT_NUMBER",
            min=1,
            max=2**31 - 1,
            help="The partial outputs of this attempt only (implies --partial).",
        ),
    ] = None,
    json_output: options.Json = False,
    server: options.Server = options.DEFAULT,
) -> None:
    """List a run's output files (path, size, sha256), or download them with --download;
    --partial or --attempt N for what failed attempts had written."""
    if partial or attempt is not None:
        partial_outputs(run_id, attempt, download, json_output, server)
        return
    with Client(server) as client:
        files = client.outputs(run_id)
        if download is not None and files:
            from modelrunner.cli.output_download import download_outputs

            written = download_outputs(client, files, download)
        else:
            written = []
    if json_output:
        output.print_json(files)
    elif files:
        output.stdout().print(outputs_table(files))
    else:
        output.hint(f"run {run_id} has no outputs (a run has outputs once it has succeeded)")
    if written:
        output.stdout().print(
            output.cell(f"saved {len(written)} file{'s' if len(written) != 1 else ''} in {download}, sha256 verified")
        )


def partial_outputs(run_id: int, attempt: int | None, download: Path | None, json_output: bool, server: str) -> None:
    """``runs outputs --partial`` / ``--attempt N``: each attempt's partial outputs, listed or
    downloaded (``<download>/attempt-N/<path>``)."""
    with Client(server) as client:
        if attempt is not None:
            found = {attempt: client.partial_outputs(run_id, attempt)}
        else:
            found = {a["number"]: a.get("partial_outputs", []) for a in client.run(run_id)["attempts"]}
        found = {number: files for number, files in found.items() if files}
        written: list[Path] = []
        if download is not None and found:
            from modelrunner.cli.output_download import download_outputs

            for number, files in found.items():
                written += download_outputs(client, files, download / f"attempt-{number}")
    if json_output:
        output.print_json([{"attempt": number, **item} for number, files in found.items() for item in files])
    elif not found:
        which = f"attempt {attempt} of run {run_id}" if attempt is not None else f"run {run_id}"
        output.hint(f"{which} has no partial outputs (an attempt keeps them when it fails, times out or is cancelled)")
    for number, files in found.items() if not json_output else ():
        output.stdout().print(outputs_table(files, title=f"partial outputs of attempt {number} (not the result)"))
    if written:
        output.stdout().print(
            output.cell(f"saved {len(written)} file{'s' if len(written) != 1 else ''} in {download}, sha256 verified")
        )
