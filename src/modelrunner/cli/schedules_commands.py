"""``modelrunner schedules`` and ``modelrunner triggers``: the rules that create runs on the server."""

from __future__ import annotations

import zoneinfo
from typing import Annotated, Any

import typer
from rich.text import Text

from modelrunner.cli import options, output
from modelrunner.cli.client import Client

schedules_app = typer.Typer(help="Schedules: runs created from a cron expression in a time zone.")
triggers_app = typer.Typer(help="Triggers: runs created when a dataset gets a new version or a run succeeds.")

ScheduleName = Annotated[
    str,
    typer.Argument(help="The schedule, as MODEL/SCHEDULE (or SCHEDULE alone when unique).", show_default=False),
]
_FIRING_STYLES = {"submitted": "green", "failed": "red", "skipped": "yellow", "waiting": "blue"}


@schedules_app.command("list")
def list_schedules(json_output: options.Json = False, server: options.Server = options.DEFAULT) -> None:
    """List the schedules: cron, time zone, next fire time (in the schedule's zone and in UTC), last firing."""
    with Client(server) as client:
        schedules = client.schedules()
    if json_output:
        output.print_json(schedules)
        return
    table = output.table(
        "schedule", "cron", "timezone", "next (its zone)", "next (UTC)", "enabled", "overlap", "last firing"
    )
    for schedule in schedules:
        table.add_row(
            output.cell(schedule["name"]),
            output.cell(schedule["cron"]),
            schedule["timezone"],
            _moment(schedule.get("next_fire_at"), schedule["timezone"]),
            _moment(schedule.get("next_fire_at"), "UTC"),
            "yes" if schedule["active"] else "no",
            schedule["overlap"],
            _firing_cell(schedule.get("last_firing")),
        )
    output.stdout().print(table)
    for schedule in schedules:
        if not schedule["active"]:
            output.hint(f"{schedule['name']} does not fire: {schedule['paused_by']}")
    if not schedules:
        output.hint("no schedules (add `schedules:` to a model.yaml, or to modelrunner.yaml with `model:`)")


@schedules_app.command("run")
def run_schedule(
    name: ScheduleName, json_output: options.Json = False, server: options.Server = options.DEFAULT
) -> None:
    """Fire a schedule now (whatever its cron says) and print the firing and its run ids. Exit 1 if
    its runs could not be submitted."""
    with Client(server) as client:
        firing = client.run_schedule(name)
    if json_output:
        output.print_json(firing)
    elif firing["status"] == "failed":
        output.error(f"firing {firing['id']} of {_shown_rule(firing)} failed: {firing['detail']}")
    else:
        line = Text(f"firing {firing['id']} of {_shown_rule(firing)}: ").append_text(_status(firing["status"]))
        line.append(f", {_runs(firing['run_ids'])}")
        if firing.get("detail"):
            line.append(f" ({firing['detail']})")
        output.stdout().print(line)
        if firing["run_ids"]:
            output.hint(f"follow a run: modelrunner runs show {firing['run_ids'][0]}")
    raise typer.Exit(1 if firing["status"] == "failed" else 0)


@schedules_app.command("firings")
def schedule_firings(
    name: ScheduleName,
    limit: Annotated[
        int, typer.Option(envvar="MODELRUNNER_LIMIT", min=1, max=500, help="Show at most this many firings.")
    ] = 20,
    json_output: options.Json = False,
    server: options.Server = options.DEFAULT,
) -> None:
    """List a schedule's firings, newest first: the tick (or manual request), outcome and runs."""
    with Client(server) as client:
        found = client.schedule_firings(name, limit)
    if json_output:
        output.print_json(found)
        return
    output.stdout().print(_firings_table(found))


@triggers_app.command("list")
def list_triggers(json_output: options.Json = False, server: options.Server = options.DEFAULT) -> None:
    """List the triggers: what each watches, the last event it evaluated, its last firing."""
    with Client(server) as client:
        triggers = client.triggers()
    if json_output:
        output.print_json(triggers)
        return
    table = output.table("trigger", "on", "watches", "enabled", "last event", "last firing")
    for trigger in triggers:
        firings = trigger.get("last_firings") or []
        event = trigger.get("last_event_id")
        table.add_row(
            output.cell(trigger["name"]),
            trigger["on"],
            output.cell(trigger["watches"]),
            "yes" if trigger["active"] else "no",
            "" if event is None else str(event),
            _firing_cell(firings[0] if firings else None),
        )
    output.stdout().print(table)
    for trigger in triggers:
        if not trigger["active"]:
            output.hint(f"{trigger['name']} does not fire: {trigger['paused_by']}")
    if not triggers:
        output.hint("no triggers (add `triggers:` to a model.yaml)")


def _firings_table(firings: list[dict[str, Any]]) -> Any:
    table = output.table("id", "cause", "status", "runs", "when", "detail")
    for firing in firings:
        table.add_row(
            str(firing["id"]),
            output.cell(firing["cause"]),
            _status(firing["status"]),
            ", ".join(map(str, firing["run_ids"])),
            output.when(firing["created_at"]),
            output.cell(firing["detail"]),
        )
    return table


def _firing_cell(firing: dict[str, Any] | None) -> Text:
    if not firing:
        return Text("never")
    cell = _status(firing["status"]).append(f" {output.when(firing['created_at'])}")
    if firing["run_ids"]:
        cell.append(f" ({_runs(firing['run_ids'])})")
    return cell


def _moment(value: str | None, zone: str) -> str:
    """An API time on the wall clock of ``zone``: ``2024-03-10 03:00 EDT``."""
    parsed = output.parse_time(value)
    return parsed.astimezone(zoneinfo.ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z") if parsed else ""


def _status(value: str) -> Text:
    return Text(value, style=_FIRING_STYLES.get(value, ""))


def _runs(run_ids: list[int]) -> str:
    if not run_ids:
        return "no runs"
    return f"run{'s' if len(run_ids) != 1 else ''} {', '.join(map(str, run_ids))}"


def _shown_rule(firing: dict[str, Any]) -> str:
    return str(firing["rule"]).split(":", 1)[-1]
