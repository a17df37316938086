"""``modelrunner subscriptions`` and ``modelrunner deliveries``: hearing of runs by e-mail, webhook
or digest, and what was sent. They act as the user of MODELRUNNER_TOKEN."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.text import Text

from modelrunner import units
from modelrunner.cli import options, output
from modelrunner.cli.client import Client
from modelrunner.engine.run_reads import param_filters
from modelrunner.errors import ModelrunnerError
from modelrunner.notify.states import DeliveryStatus, NotifyOn
from modelrunner.store.row_ids import INT64_MAX

subscriptions_app = typer.Typer(
    help="Subscriptions: hear of a model's runs (or one run) by e-mail, signed webhook or a daily digest."
)
deliveries_app = typer.Typer(help="Deliveries: every notification sent, retried, failed or held for a digest.")

_DELIVERY_STYLES = {
    "delivered": "green",
    "failed": "red",
    "pending": "blue",
    "sending": "cyan",
    "cancelled": "yellow",
    "held": "dim",
    "digested": "dim",
}
_ON_TEXT = {NotifyOn.ALL: "ends", NotifyOn.FAILURES: "fails", NotifyOn.RESULTS_CHANGED: "brings changed results"}
Limit = Annotated[int, typer.Option(envvar="MODELRUNNER_LIMIT", min=1, max=500, help="Show at most this many.")]


@subscriptions_app.command("add")
def add(
    model: Annotated[str | None, typer.Option("--model", "-m", help="Every top-level run of this model.")] = None,
    run: Annotated[
        int | None, typer.Option("--run", help="This one run (it must not have ended).", min=1, max=INT64_MAX)
    ] = None,
    step: Annotated[
        str | None,
        typer.Option("--step", envvar="MODELRUNNER_STEP", help="Only the runs of this step of the pipeline."),
    ] = None,
    output_path: Annotated[
        str | None,
        typer.Option(
            "--output", envvar="MODELRUNNER_OUTPUT", help="Only when this output's bytes change (e.g. results.csv)."
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="NAME=VALUE: only runs whose parameter has this value (a number, true, false or "
            '"quoted text" is matched as that, anything else as text); repeat for several.',
        ),
    ] = None,
    on: Annotated[
        str | None,
        typer.Option(
            "--on",
            envvar="MODELRUNNER_NOTIFY_ON",
            help="all (every run that ends), failures (failed or timed out), or results-changed (successes whose "
            "outputs differ from the previous result for the same parameters). Default: results-changed with "
            "--output, else all.",
        ),
    ] = None,
    email: Annotated[bool, typer.Option("--email", help="Mail each notification to your e-mail address.")] = False,
    webhook: Annotated[
        str | None, typer.Option("--webhook", help="POST each notification, signed, to this URL.")
    ] = None,
    secret: Annotated[
        str | None,
        typer.Option(
            envvar="MODELRUNNER_WEBHOOK_SECRET",
            help="The webhook's signing secret (16+ characters); without it, a random one is made and shown once.",
        ),
    ] = None,
    digest: Annotated[
        bool, typer.Option("--digest", help="Collect notifications into the server's digest mail.")
    ] = False,
    json_output: options.Json = False,
    server: options.Server = options.DEFAULT,
) -> None:
    """Subscribe to a model's runs (or one run): by e-mail, webhook, or digest. --step, --output
    and --param narrow it to one step's runs, one output's changes, runs with those parameters."""
    if (model is None) == (run is None):
        raise ModelrunnerError("give either --model (all its runs) or --run (one run)")
    chosen = {"email": email, "webhook": webhook is not None, "digest": digest}
    channels = [name for name, given in chosen.items() if given]
    if len(channels) != 1:
        raise ModelrunnerError("give one of --email, --webhook URL or --digest")
    if secret is not None and webhook is None:
        raise ModelrunnerError("--secret is for --webhook only")
    body: dict[str, Any] = {"channel": channels[0]}
    if on is not None:
        body["on"] = _notify_on(on)
    given = (("model", model), ("run_id", run), ("url", webhook), ("step", step), ("output", output_path))
    body.update({key: value for key, value in given if value})
    if param:
        body["params"] = param_filters(param)
    if secret is not None:
        body["secret"] = secret
    with Client(server) as client:
        created = client.subscribe(body)
    if json_output:
        output.print_json(created)
        return
    output.stdout().print(Text(f"subscription {created['id']}: {_describe(created)}"))
    if created.get("secret"):
        output.stdout().print(Text(f"webhook secret: {created['secret']}"))
        output.hint("this secret is shown once: keep it now, the receiver verifies X-Modelrunner-Signature with it")


@subscriptions_app.command("list")
def list_subscriptions(json_output: options.Json = False, server: options.Server = options.DEFAULT) -> None:
    """List your subscriptions (a site admin: everyone's)."""
    with Client(server) as client:
        found = client.subscriptions()
    if json_output:
        output.print_json(found)
        return
    table = output.table("id", "user", "watches", "on", "channel", "to", "created")
    for row in found:
        table.add_row(
            str(row["id"]),
            output.cell(row["user"]),
            output.cell(_watched(row)),
            row["on"],
            row["channel"],
            output.cell(row.get("target") or ""),
            output.when(row["created_at"]),
        )
    output.stdout().print(table)
    if not found:
        output.hint("no subscriptions (add one: modelrunner subscriptions add --model MODEL --email)")


@subscriptions_app.command("remove")
def remove(
    subscription_id: Annotated[
        int, typer.Argument(help="The subscription id (as `subscriptions list` shows it).", min=1, max=INT64_MAX)
    ],
    json_output: options.Json = False,
    server: options.Server = options.DEFAULT,
) -> None:
    """Remove a subscription; what it has not sent yet is cancelled."""
    with Client(server) as client:
        removed = client.unsubscribe(subscription_id)
    if json_output:
        output.print_json(removed)
        return
    output.stdout().print(Text(f"removed subscription {removed['id']} ({_describe(removed)})"))


@deliveries_app.command("list")
def list_deliveries(
    subscription: Annotated[
        int | None,
        typer.Option(
            "--subscription", envvar="MODELRUNNER_SUBSCRIPTION", min=1, max=INT64_MAX, help="Only this one's."
        ),
    ] = None,
    status: Annotated[
        list[DeliveryStatus] | None,
        typer.Option("--status", "-s", envvar="MODELRUNNER_STATUS", help="Only in this status; repeat for several."),
    ] = None,
    limit: Limit = 20,
    json_output: options.Json = False,
    server: options.Server = options.DEFAULT,
) -> None:
    """List your deliveries (a site admin: everyone's), newest first."""
    with Client(server) as client:
        found = client.deliveries(subscription, [s.value for s in status or []], limit)
    if json_output:
        output.print_json(found)
        return
    table = output.table("id", "created", "event", "run", "channel", "to", "status", "attempts", "last error")
    for row in found:
        table.add_row(
            str(row["id"]),
            output.when(row["created_at"]),
            row["event"],
            "" if row["run_id"] is None else str(row["run_id"]),
            row["channel"],
            output.cell(row["target"]),
            _status(row["status"]),
            str(row["attempt_count"]),
            output.cell(row.get("last_error") or ""),
        )
    output.stdout().print(table)
    if not found:
        output.hint("no deliveries yet")


@deliveries_app.command("show")
def show(
    delivery_id: Annotated[
        int, typer.Argument(help="The delivery id (as `deliveries list` shows it).", min=1, max=INT64_MAX)
    ],
    json_output: options.Json = False,
    server: options.Server = options.DEFAULT,
) -> None:
    """A delivery with every attempt: when, how long, and what the other side answered."""
    with Client(server) as client:
        found = client.delivery(delivery_id)
    if json_output:
        output.print_json(found)
        return
    console = output.stdout()
    line = Text(f"delivery {found['id']} ({found['key']}): {found['event']} by {found['channel']} to ")
    line.append(found["target"] or "the next digest").append(", ").append_text(_status(found["status"]))
    console.print(line)
    if found.get("run_id") is not None:
        console.print(Text(f"run {found['run_id']}, subscription {found['subscription_id']}"))
    if found.get("next_attempt_at") and found["status"] == "pending":
        console.print(Text(f"next attempt: {output.when(found['next_attempt_at'])}"))
    table = output.table("attempt", "started", "took", "outcome", "error")
    for attempt in found["attempts"]:
        outcome = "ok" if attempt["ok"] else "failed"
        if attempt.get("http_status") is not None:
            outcome += f" (HTTP {attempt['http_status']})"
        table.add_row(
            str(attempt["number"]),
            output.when(attempt["started_at"]),
            units.duration(attempt["duration_seconds"]),
            Text(outcome, style="green" if attempt["ok"] else "red"),
            output.cell(attempt.get("error") or ""),
        )
    console.print(table)


def _notify_on(value: str) -> str:
    normalised = value.strip().replace("-", "_")
    if normalised not in {item.value for item in NotifyOn}:
        raise ModelrunnerError(f"--on {value!r}: use all, failures or results-changed")
    return normalised


def _watched(row: dict[str, Any]) -> str:
    if row.get("run_id"):
        return f"run {row['run_id']} of {row['model']}"
    return f"model {row['model']}" + "".join(f", {part}" for part in _narrowed(row))


def _narrowed(row: dict[str, Any]) -> list[str]:
    """``step answer_queries``, ``output results.csv``, ``query=covid``: what narrows a subscription."""
    parts = [f"step {row['step']}"] if row.get("step") else []
    if row.get("output"):
        parts.append(f"output {row['output']}")
    parts += [f"{name}={json.dumps(value)}" for name, value in (row.get("params") or {}).items()]
    return parts


def _describe(row: dict[str, Any]) -> str:
    """``e-mail to alice@example.org when a run of noop fails``."""
    how = {"email": "e-mail to", "webhook": "webhook to", "digest": "the digest mail to"}[row["channel"]]
    if row.get("run_id"):
        watched = f"run {row['run_id']} of {row['model']}"
    else:
        step = f"step {row['step']} of " if row.get("step") else ""
        watched = f"a run of {step}{row['model']}"
        if row.get("params"):
            watched += " with " + ", ".join(f"{n}={json.dumps(v)}" for n, v in row["params"].items())
    if row.get("output"):
        return f"{how} {row.get('target') or ''} when {watched} changes {row['output']}"
    return f"{how} {row.get('target') or ''} when {watched} {_ON_TEXT[NotifyOn(row['on'])]}"


def _status(value: str) -> Text:
    return Text(value, style=_DELIVERY_STYLES.get(value, ""))
