"""What a notification says: the JSON payload of a run that ended (the webhook body, and what a
mail is written from), and the subject, text and HTML of mails and digests.

A payload is fixed when its delivery is created, so every retry sends the same content; it holds
what a viewer of the model may see through the API (parameters, error, output digests, the
model's own summary) and never a secret. A mail about a run with a summary is that summary, as
sanitised HTML and as plain text (notify/summaries.py), followed by the run's facts; a digest
groups its runs by the subscription that held them, each with its summary.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from modelrunner.notify.summaries import shortened, to_html, to_text
from modelrunner.store.tables import OutputRow, RunRow, SubscriptionRow

MAX_OUTPUTS = 50  # outputs listed in one payload; `outputs_total` says how many there are
MAX_DIGEST_ITEMS = 500  # runs listed in one digest; `total` says how many there are


def run_payload(
    *,
    key: str,
    subscription_id: int,
    event_id: int,
    occurred_at: dt.datetime,
    status: str,
    run: RunRow,
    outputs: Sequence[OutputRow],
    results_changed: bool | None,
    base_url: str,
    summary: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The notification of ``run`` ending in ``status`` (event ``event_id``) to one subscription.

    ``results_changed`` is None unless the run succeeded; ``summary`` is the model's own news
    (``Summary.as_payload()``), None when it wrote none."""
    run_url = f"{base_url}/api/v1/runs/{run.id}"
    return {
        "delivery": key,
        "event": f"run.{status}",
        "event_id": event_id,
        "occurred_at": occurred_at.isoformat(),
        "subscription_id": subscription_id,
        "run_id": run.id,
        "model": run.model_name,
        "model_version": run.model_version,
        "kind": run.kind,
        "step": run.step,
        "pipeline_id": run.parent_id,
        "status": status,
        "error": run.error if status != "succeeded" else None,
        "params": run.params,
        "results_changed": results_changed,
        "outputs": [
            {"path": o.path, "size": o.size, "sha256": o.sha256, "url": f"{run_url}/outputs/{quote(o.path)}"}
            for o in outputs[:MAX_OUTPUTS]
        ],
        "outputs_total": len(outputs),
        "summary": summary,
        "links": {"run": run_url, "outputs": f"{run_url}/outputs", "logs": f"{run_url}/logs"},
    }


def subscription_payload(row: SubscriptionRow) -> dict[str, Any]:
    """What a digest says of the subscription that held its runs."""
    return {
        "id": row.id,
        "model": row.model,
        "run_id": row.run_id,
        "step": row.step,
        "output": row.output,
        "params": row.params,
        "on": row.notify_on,
    }


def digest_payload(
    *,
    key: str,
    user: str,
    tick_at: dt.datetime,
    items: Sequence[dict[str, Any]],
    total: int,
    subscriptions: Mapping[int, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The digest mail of ``user`` for the tick at ``tick_at``: the items' payloads summarised and
    grouped by the subscription that held them (``subscriptions``: id -> ``subscription_payload``),
    in the order of each group's first item; within a group oldest first."""
    groups: dict[int | None, list[dict[str, Any]]] = {}
    for item in items[:MAX_DIGEST_ITEMS]:
        groups.setdefault(item.get("subscription_id"), []).append(_digest_item(item))
    known = subscriptions or {}
    return {
        "delivery": key,
        "event": "digest",
        "user": user,
        "tick_at": tick_at.isoformat(),
        "groups": [
            {"subscription": known.get(group_id) if group_id is not None else None, "items": group}
            for group_id, group in groups.items()
        ],
        "total": total,
    }


def _digest_item(payload: dict[str, Any]) -> dict[str, Any]:
    fields = ("event", "occurred_at", "run_id", "model", "step", "status", "error", "results_changed", "links")
    item = {name: payload.get(name) for name in fields}
    item["params"] = payload.get("params")
    item["summary"] = shortened(payload["summary"]) if payload.get("summary") else None
    return item


def _groups(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """A digest's groups (a digest composed before groups existed: one group of its items)."""
    groups: list[dict[str, Any]] = payload.get("groups") or [{"subscription": None, "items": payload.get("items", [])}]
    return groups


def watching(subscription: Mapping[str, Any]) -> str:
    """``noop, step answer_queries, query=covid: results changed``: what a subscription watches."""
    what = [
        f"run {subscription['run_id']} of {subscription['model']}"
        if subscription.get("run_id")
        else subscription["model"]
    ]
    if subscription.get("step"):
        what.append(f"step {subscription['step']}")
    if subscription.get("output"):
        what.append(f"output {subscription['output']}")
    for name, value in (subscription.get("params") or {}).items():
        what.append(f"{name}={value}")
    on = {"all": "every run that ends", "failures": "failures", "results_changed": "changed results"}
    return f"{', '.join(what)}: {on.get(str(subscription.get('on')), str(subscription.get('on')))}"


def run_subject(payload: dict[str, Any]) -> str:
    changed = " (results changed)" if payload.get("results_changed") else ""
    return f"[modelrunner] {_what(payload)} {payload['status']}{changed}"


def run_text(payload: dict[str, Any]) -> str:
    """The plain-text body of the mail about one run: the model's summary (if it wrote one), then
    what happened to the run."""
    lines = []
    summary = payload.get("summary")
    if summary:
        lines += [to_text(summary["markdown"]).rstrip("\n"), *_cut_note(summary), "", "-- ", ""]
    lines += [f"{_what(payload)} {payload['status']} at {_when(payload['occurred_at'])}.", ""]
    if payload.get("error"):
        lines += [f"Error: {payload['error']}", ""]
    if payload.get("results_changed") is not None:
        changed = "differ from" if payload["results_changed"] else "are the same as"
        lines += [f"Its outputs {changed} the previous result for these parameters.", ""]
    lines.append(f"Parameters: {payload.get('params')}")
    if payload.get("outputs"):
        lines += ["", f"Outputs ({payload['outputs_total']}):"]
        lines += [f"  {o['path']}  {o['size']} bytes  sha256 {o['sha256']}" for o in payload["outputs"]]
        if payload["outputs_total"] > len(payload["outputs"]):
            lines.append(f"  ... and {payload['outputs_total'] - len(payload['outputs'])} more")
    lines += ["", f"Run: {payload['links']['run']}", f"Logs: {payload['links']['logs']}", "", _footer(payload)]
    return "\n".join(lines) + "\n"


def run_html(payload: dict[str, Any]) -> str | None:
    """The HTML body of the mail about one run: its summary rendered and sanitised, then the run's
    facts; None when the model wrote no summary (the mail is plain text)."""
    summary = payload.get("summary")
    if not summary:
        return None
    links = payload["links"]
    facts = [f"{_what(payload)} {payload['status']} at {_when(payload['occurred_at'])}."]
    if payload.get("error"):
        facts.append(f"Error: {payload['error']}")
    parts = [
        to_html(summary["markdown"]),
        *(f"<p><em>{_e(note)}</em></p>" for note in _cut_note(summary)),
        "<hr>",
        *(f"<p>{_e(fact)}</p>" for fact in facts),
        f'<p><a href="{_e(links["run"])}">Run</a> &middot; <a href="{_e(links["logs"])}">Logs</a></p>',
        f'<p style="color:#666;font-size:small">{_e(_footer(payload))}</p>',
    ]
    return _document(parts)


def digest_subject(payload: dict[str, Any]) -> str:
    total = payload["total"]
    return f"[modelrunner] digest: {total} run{'s' if total != 1 else ''} ended"


def digest_text(payload: dict[str, Any]) -> str:
    """The plain-text body of a digest mail: per subscription, one line per run (oldest first)
    followed by its summary."""
    total = payload["total"]
    lines = [f"{total} run{'s' if total != 1 else ''} you subscribed to ended since your last digest:"]
    shown = 0
    for group in _groups(payload):
        lines.append("")
        if group.get("subscription"):
            subscription = group["subscription"]
            lines += [f"Subscription {subscription['id']} ({watching(subscription)}):", ""]
        for item in group["items"]:
            shown += 1
            changed = " (results changed)" if item.get("results_changed") else ""
            error = f": {item['error']}" if item.get("error") else ""
            lines.append(f"- {_when(item['occurred_at'])}  {_what(item)} {item['status']}{changed}{error}")
            lines.append(f"  {item['links']['run']}")
            if item.get("summary"):
                text = to_text(item["summary"]["markdown"]).rstrip("\n")
                lines += ["", *("    " + line if line else "" for line in text.split("\n"))]
                lines += ["    " + note for note in _cut_note(item["summary"])]
                lines.append("")
    if total > shown:
        lines.append(f"... and {total - shown} more")
    lines += ["", "You get this digest because of your digest subscriptions (`modelrunner subscriptions list`)."]
    return "\n".join(lines) + "\n"


def digest_html(payload: dict[str, Any]) -> str | None:
    """The HTML body of a digest mail, when any of its runs has a summary (else None: plain text)."""
    groups = _groups(payload)
    if not any(item.get("summary") for group in groups for item in group["items"]):
        return None
    total = payload["total"]
    parts = [f"<p>{total} run{'s' if total != 1 else ''} you subscribed to ended since your last digest.</p>"]
    shown = 0
    for group in groups:
        if group.get("subscription"):
            subscription = group["subscription"]
            parts.append(f"<h2>Subscription {int(subscription['id'])}: {_e(watching(subscription))}</h2>")
        for item in group["items"]:
            shown += 1
            changed = " (results changed)" if item.get("results_changed") else ""
            error = f": {item['error']}" if item.get("error") else ""
            line = f"{_when(item['occurred_at'])} {_what(item)} {item['status']}{changed}{error}"
            parts.append(f'<h3><a href="{_e(item["links"]["run"])}">{_e(line)}</a></h3>')
            if item.get("summary"):
                parts.append(f'<div style="margin-left:1em">{to_html(item["summary"]["markdown"])}</div>')
                parts += [f"<p><em>{_e(note)}</em></p>" for note in _cut_note(item["summary"])]
    if total > shown:
        parts.append(f"<p>... and {total - shown} more</p>")
    parts.append(
        '<p style="color:#666;font-size:small">You get this digest because of your digest subscriptions '
        "(<code>modelrunner subscriptions list</code>).</p>"
    )
    return _document(parts)


def _cut_note(summary: dict[str, Any]) -> list[str]:
    return ["(The summary was cut short; the run's outputs hold all of it.)"] if summary.get("truncated") else []


def _document(parts: list[str]) -> str:
    body = "\n".join(parts)
    return f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head><body>\n{body}\n</body></html>\n'


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


def _what(payload: dict[str, Any]) -> str:
    step = f" step {payload['step']}" if payload.get("step") else ""
    return f"run {payload['run_id']} of {payload['model']}{step}"


def _when(iso: str) -> str:
    return dt.datetime.fromisoformat(iso).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _footer(payload: dict[str, Any]) -> str:
    return (
        f"You get this mail because of subscription {payload['subscription_id']} "
        f"(remove it with `modelrunner subscriptions remove {payload['subscription_id']}`)."
    )
