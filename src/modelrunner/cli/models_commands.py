"""``modelrunner models``: the models the server offers and their parameters."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from modelrunner import units
from modelrunner.cli import options, output
from modelrunner.cli.client import Client

models_app = typer.Typer(help="The models the server offers, with their parameters.")


@models_app.command("list")
def list_models(json_output: options.Json = False, server: options.Server = options.DEFAULT) -> None:
    """List the models of the server's workspace with their current versions."""
    with Client(server) as client:
        models = client.models()
    if json_output:
        output.print_json(models)
        return
    table = output.table("model", "version", "title")
    for model in models:
        table.add_row(output.cell(model["name"]), model["version"], output.cell(model["title"]))
    output.stdout().print(table)
    if not models:
        output.hint(
            "no models to show: you may view none (grants are under `access:` in modelrunner.yaml), "
            "or the workspace has no valid ones (`modelrunner check` explains why)"
        )


@models_app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Name of the model.", show_default=False)],
    json_output: options.Json = False,
    server: options.Server = options.DEFAULT,
) -> None:
    """Show a model: description, version, resources, outputs, and a table of its parameters."""
    with Client(server) as client:
        model = client.model(name)
    if json_output:
        output.print_json(model)
        return
    console = output.stdout()
    console.print(output.cell(f"{model['name']} (version {model['version']})"), style="bold")
    for text in (model.get("title"), model.get("description")):
        if text:
            console.print(output.cell(text.strip()))
    resources = ", ".join(
        f"{k} {units.duration(v) if k == 'timeout' else v}"
        for k, v in model.get("resources", {}).items()
        if v is not None
    )
    console.print(output.cell(f"resources: {resources}"))
    retries = model.get("retries", {})
    failed, lost = retries.get("failed", 0), retries.get("lost", 0)
    console.print(output.cell(f"retries: {failed} after a failure, {lost} after a lost worker"))
    console.print(parameters_table(model.get("params", {})))
    if model.get("steps"):
        steps = output.table("step", "runs", "needs", "fan-out over", "runs when", "publishes", title="steps")
        for step_name, step in model["steps"].items():
            foreach = step.get("foreach")
            steps.add_row(
                output.cell(step_name),
                output.cell(_form_text(step)),
                output.cell(_needs_text(step.get("needs", []))),
                output.cell(json.dumps(foreach) if isinstance(foreach, list) else foreach or ""),
                output.cell(step.get("when") or ""),
                "yes" if step.get("publish") else "",
            )
        console.print(steps)
    if model.get("outputs"):
        table = output.table("path", "description", title="outputs")
        for item in model["outputs"]:
            table.add_row(output.cell(item["path"]), output.cell(item.get("description", "").strip()))
        console.print(table)


def parameters_table(schema: dict[str, Any]) -> Table:
    """One row per property of the JSON Schema: name, type (with limits), default, description."""
    table = output.table("parameter", "type", "default", "description", title="parameters")
    required = set(schema.get("required", []))
    for name, declared in schema.get("properties", {}).items():
        declared = declared if isinstance(declared, dict) else {}
        default = json.dumps(declared["default"]) if "default" in declared else ""
        if not default and name in required:
            default = "(required)"
        description = str(declared.get("description", "")).strip()
        table.add_row(
            output.cell(name), output.cell(_type_of(declared)), output.cell(default), output.cell(description)
        )
    if not schema.get("properties"):
        table.add_row("(none)", "", "", "")
    return table


def _type_of(declared: dict[str, Any]) -> str:
    kind = declared.get("type", "any")
    text = " or ".join(kind) if isinstance(kind, list) else str(kind)
    if "enum" in declared:
        text += " one of " + ", ".join(json.dumps(v) for v in declared["enum"])
    limits = [
        f"{symbol} {declared[key]}"
        for key, symbol in (
            ("minimum", ">="),
            ("exclusiveMinimum", ">"),
            ("maximum", "<="),
            ("exclusiveMaximum", "<"),
        )
        if key in declared
    ]
    return f"{text} ({', '.join(limits)})" if limits else text


def _needs_text(needs: list[str] | dict[str, str]) -> str:
    """``needs`` as a model's page shows it: "tests (item by item), update (if it runs)"."""
    if isinstance(needs, list):
        return ", ".join(needs)
    shown = {"all": "", "item": " (item by item)", "optional": " (if it runs)"}
    return ", ".join(f"{name}{shown.get(how, '')}" for name, how in needs.items())


def _form_text(step: dict[str, Any]) -> str:
    """What a step starts: its command, its notebook, or its image (and the command given to it)."""
    command = " ".join(step.get("command") or [])
    if step.get("notebook"):
        return f"notebook {step['notebook']}"
    if step.get("image"):
        return f"image {step['image']}" + (f": {command}" if command else "")
    return command
