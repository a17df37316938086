"""How a run from the API is shown: its outcome line, its details, its attempts and outputs."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from modelrunner.cli import output
from modelrunner.cli.client import Client
from modelrunner.cli.progress_view import follow

FINAL = frozenset({"succeeded", "failed", "timed_out", "cancelled"})
SHORT_VERSION = 12  # characters of a data version id shown (a git sha's usual short form is shorter)
_SUBMISSIONS = {
    "created": "created: a new run",
    "joined": "joined: an identical run was already in flight",
    "cache_hit": "cache hit: answered from the cache",
}


def submission_line(run: dict[str, Any]) -> Text:
    """``run 12 (noop) created: a new run; status queued`` (or joined, or cache hit)."""
    how = _SUBMISSIONS.get(str(run.get("submission")), str(run.get("submission", "")))
    if run.get("cache_hit") and run.get("source_run_id") is not None:
        how += f" (computed by run {run['source_run_id']})"
    line = Text(f"run {run['id']} ({run['model']}) {how}; status ")
    line.append_text(output.status(run["status"]))
    if run.get("inputs"):
        line.append(f"; inputs {input_versions(run['inputs'])}")
    return line


def input_versions(inputs: dict[str, Any]) -> str:
    """``cases=covid@1a2b3c4d5e6f, regions=geo@...``: each input's dataset at the version used (short)."""
    return ", ".join(
        f"{name}={chosen['dataset']}@{chosen['version'][:SHORT_VERSION]}" for name, chosen in sorted(inputs.items())
    )


def outcome_line(run: dict[str, Any]) -> Text:
    """``run 12 succeeded in 1.3s`` or ``run 12 failed: <error>``."""
    line = Text(f"run {run['id']} ").append_text(output.status(run["status"]))
    took = output.duration(run.get("started_at"), run.get("finished_at"))
    if run.get("cache_hit"):
        line.append(f" (cache hit of run {run['source_run_id']})")
    elif took:
        line.append(f" in {took}")
    if run.get("error"):
        line.append(f": {run['error']}")
    return line


def _step_of(run: dict[str, Any]) -> str | None:
    if run.get("step") is None:
        return None
    item = f" item {run['item_key']}" if run.get("item_key") is not None else ""
    return f"{run['step']}{item} of pipeline run {run['parent_id']}"


_RULES = {
    "request": "named in the request",
    "model": "the model's default",
    "workspace": "the workspace default",
}


def _backend_of(run: dict[str, Any]) -> str | None:
    """``wide (routing rule of group modellers)``: where the run runs, and what chose it."""
    if run.get("backend") is None:
        return None
    rule = str(run.get("backend_rule") or "")
    group = rule.removeprefix("routing:") if rule.startswith("routing:") else None
    why = f"routing rule of group {group}" if group is not None else _RULES.get(rule, rule)
    return f"{run['backend']} ({why})" if why else str(run["backend"])


def outputs_table(outputs: list[dict[str, Any]], title: str = "outputs") -> Table:
    table = output.table("path", "size", "sha256", title=title)
    for item in outputs:
        table.add_row(output.cell(item["path"]), output.size(int(item["size"])), item["sha256"])
    return table


def steps_table(steps: list[dict[str, Any]]) -> Table:
    """A pipeline run's steps: state, how many of their runs ended how, the first error (or why
    the step is skipped or blocked)."""
    table = output.table("step", "status", "runs", "run ids", "error or reason", title="steps")
    for step in steps:
        counts = ", ".join(f"{count} {status}" for status, count in sorted(step["counts"].items()))
        ids = step["run_ids"]
        shown = ", ".join(map(str, ids[:5])) + (f" … ({len(ids)})" if len(ids) > 5 else "")
        table.add_row(
            output.cell(step["name"]),
            output.status(step["status"]),
            output.cell(f"{counts} of {step['items']}" if counts else f"0 of {step['items']}"),
            output.cell(shown),
            output.cell(step["error"] or step.get("reason")),
        )
    return table


def attempts_table(attempts: list[dict[str, Any]]) -> Table:
    table = output.table("attempt", "status", "backend", "exit code", "duration", "error", title="attempts")
    for attempt in attempts:
        table.add_row(
            str(attempt["number"]),
            output.status(attempt["status"]),
            output.cell(attempt["backend"]),
            output.cell(attempt["exit_code"]),
            output.duration(attempt["started_at"], attempt["finished_at"]),
            output.cell(attempt["error"]),
        )
    return table


def print_finished(console: Console, run: dict[str, Any]) -> None:
    """The outcome line, a hint where to look on failure, and the outputs."""
    console.print(outcome_line(run))
    if run["status"] != "succeeded" and not run.get("cache_hit"):
        output.hint(f"see what it printed: modelrunner runs logs {run['id']}")
    if run.get("outputs"):
        console.print(outputs_table(run["outputs"]))


def print_details(console: Console, run: dict[str, Any]) -> None:
    """Everything about one run, for ``runs show``."""
    fields = output.table("field", "value")
    fields.show_header = False
    progress = run.get("progress") or {}
    rows: list[tuple[str, Any]] = [
        ("id", run["id"]),
        ("model", f"{run['model']} (version {run['model_version']})"),
        ("kind", run.get("kind") if run.get("kind") != "run" else None),
        ("step", _step_of(run)),
        ("origin", run.get("origin")),
        ("submitted by", run.get("submitted_by")),
        ("backend", _backend_of(run)),
        ("status", output.status(run["status"])),
        ("cache hit", f"yes, computed by run {run['source_run_id']}" if run.get("cache_hit") else "no"),
        ("params", json.dumps(run.get("params", {}), sort_keys=True)),
        ("inputs", input_versions(run.get("inputs") or {})),
        ("progress", " ".join(filter(None, [output.percent(progress.get("fraction")), progress.get("message")]))),
        ("error", run.get("error")),
        ("created", output.when(run.get("created_at"))),
        ("started", output.when(run.get("started_at"))),
        ("finished", output.when(run.get("finished_at"))),
        ("duration", output.duration(run.get("started_at"), run.get("finished_at"))),
        ("cache key", run.get("cache_key")),
    ]
    for name, value in rows:
        if value not in (None, ""):
            fields.add_row(name, value if isinstance(value, Text) else output.cell(value))
    console.print(fields)
    if run.get("steps"):
        console.print(steps_table(run["steps"]))
    if run.get("attempts"):
        console.print(attempts_table(run["attempts"]))
    if run.get("outputs"):
        console.print(outputs_table(run["outputs"]))


def report_submission(run: dict[str, Any], json_output: bool) -> None:
    """The submission line (or the JSON) and a hint of what to do next."""
    if json_output:
        output.print_json(run)
        return
    output.stdout().print(submission_line(run))
    if run["status"] not in FINAL:
        output.hint(f"follow it: modelrunner runs show {run['id']} / modelrunner runs logs {run['id']} --follow")
    elif run["status"] == "succeeded":
        output.hint(f"its outputs: modelrunner runs outputs {run['id']}")


def follow_run(client: Client, run: dict[str, Any]) -> dict[str, Any]:
    """Poll the run until it ends, showing its progress. Ctrl-C stops waiting, not the run."""
    run_id = run["id"]
    try:
        return follow(f"run {run_id} ({run['model']})", run, lambda: client.run(run_id), FINAL)
    except KeyboardInterrupt:
        output.stderr().print(
            f"stopped waiting; run {run_id} continues on the server. Cancel it with: modelrunner runs cancel {run_id}",
            markup=False,
        )
        raise typer.Exit(130) from None


def wait_and_report(client: Client, submitted: dict[str, Any], json_output: bool) -> dict[str, Any]:
    """Follow a submitted run to its end, then print it (the JSON alone with ``json_output``)."""
    finished = submitted
    if submitted["status"] not in FINAL:
        console = output.stderr() if json_output else output.stdout()
        console.print(submission_line(submitted))
        finished = follow_run(client, submitted)
    final = {**finished, "submission": submitted["submission"]}
    if json_output:
        output.print_json(final)
    else:
        print_finished(output.stdout(), final)
    return final
