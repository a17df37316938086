"""What a notification says: the JSON payload of a run that ended (the webhook body, and what a
mail is written from), and the subject and text of mails and digests.

A payload is fixed when its delivery is created, so every retry sends the same content; it holds
what a viewer of the model may see through the API (parameters, error, output digests) and never
a secret.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from modelrunner.store.tables import OutputRow, RunRow

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
) -> dict[str, Any]:
    """The notification of ``run`` ending in ``status`` (event ``event_id``) to one subscription.

    ``results_changed`` is None unless the run succeeded."""
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
        "links": {"run": run_url, "outputs": f"{run_url}/outputs", "logs": f"{run_url}/logs"},
    }


def digest_payload(
    *, key: str, user: str, tick_at: dt.datetime, items: Sequence[dict[str, Any]], total: int
) -> dict[str, Any]:
    """The digest mail of ``user`` for the tick at ``tick_at``: a summary of each item's payload."""
    return {
        "delivery": key,
        "event": "digest",
        "user": user,
        "tick_at": tick_at.isoformat(),
        "items": [_digest_item(item) for item in items[:MAX_DIGEST_ITEMS]],
        "total": total,
    }


def _digest_item(payload: dict[str, Any]) -> dict[str, Any]:
    fields = ("event", "occurred_at", "run_id", "model", "step", "status", "error", "results_changed", "links")
    return {name: payload.get(name) for name in fields}


def run_subject(payload: dict[str, Any]) -> str:
    changed = " (results changed)" if payload.get("results_changed") else ""
    return f"[modelrunner] {_what(payload)} {payload['status']}{changed}"


def run_text(payload: dict[str, Any]) -> str:
    """The plain-text body of the mail about one run."""
    lines = [f"{_what(payload)} {payload['status']} at {_when(payload['occurred_at'])}.", ""]
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


def digest_subject(payload: dict[str, Any]) -> str:
    total = payload["total"]
    return f"[modelrunner] digest: {total} run{'s' if total != 1 else ''} ended"


def digest_text(payload: dict[str, Any]) -> str:
    """The plain-text body of a digest mail: one line per run, oldest first."""
    total = payload["total"]
    lines = [f"{total} run{'s' if total != 1 else ''} you subscribed to ended since your last digest:", ""]
    for item in payload["items"]:
        changed = " (results changed)" if item.get("results_changed") else ""
        error = f": {item['error']}" if item.get("error") else ""
        lines.append(f"- {_when(item['occurred_at'])}  {_what(item)} {item['status']}{changed}{error}")
        lines.append(f"  {item['links']['run']}")
    if total > len(payload["items"]):
        lines.append(f"... and {total - len(payload['items'])} more")
    lines += ["", "You get this digest because of your digest subscriptions (`modelrunner subscriptions list`)."]
    return "\n".join(lines) + "\n"


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
