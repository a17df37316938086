"""``modelrunner backends``: where the server runs models, and whether it can."""

from __future__ import annotations

import typer
from rich.text import Text

from modelrunner.cli import options, output
from modelrunner.cli.client import Client

backends_app = typer.Typer(help="Backends: where runs execute (local, dask, ...).")


@backends_app.command("list")
def list_backends(json_output: options.Json = False, server: options.Server = options.DEFAULT) -> None:
    """List the backends: type, health (can the server reach its engine?), running attempts and queued runs."""
    with Client(server) as client:
        backends = client.backends()
    if json_output:
        output.print_json(backends)
        return
    table = output.table("backend", "type", "health", "running", "queued")
    for backend in backends:
        health = Text("ok", style="green") if backend["healthy"] else Text("down", style="red")
        table.add_row(
            output.cell(backend["name"]), backend["type"], health, str(backend["running"]), str(backend["queued"])
        )
    output.stdout().print(table)
    for backend in backends:
        if backend["problem"]:
            output.hint(f"{backend['name']}: {backend['problem']}")
