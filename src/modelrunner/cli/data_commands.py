"""``modelrunner data``: the server's datasets, their versions, and syncs that look for new ones."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import typer
from rich.text import Text

from modelrunner import units
from modelrunner.cli import options, output
from modelrunner.cli.client import Client
from modelrunner.cli.progress_view import follow
from modelrunner.cli.run_view import SHORT_VERSION as SHORT

_SYNC_FINAL = frozenset({"succeeded", "failed"})

data_app = typer.Typer(
    help="Datasets: list them, see their versions, sync new versions from their sources, put files into managed ones."
)

DatasetName = Annotated[
    str, typer.Argument(help="Name of the dataset (as declared in modelrunner.yaml).", show_default=False)
]


@data_app.command("list")
def list_datasets(json_output: options.Json = False, server: options.Server = options.DEFAULT) -> None:
    """List the datasets of the server's workspace: versions, newest version, poll interval, last sync."""
    with Client(server) as client:
        datasets = client.datasets()
    if json_output:
        output.print_json(datasets)
        return
    table = output.table("dataset", "source", "versions", "newest", "poll", "last sync")
    for dataset in datasets:
        newest = dataset.get("newest")
        table.add_row(
            output.cell(dataset["name"]),
            dataset["source"],
            str(dataset["version_count"]),
            f"{newest['version'][:SHORT]} {output.when(newest['time'])}" if newest else "",
            units.duration(dataset.get("poll")) or "on request",
            _sync_cell(dataset.get("last_sync")),
        )
    output.stdout().print(table)
    for dataset in datasets:
        last = dataset.get("last_sync") or {}
        if last.get("status") == "failed":
            output.hint(f"the last sync of {dataset['name']} failed: {last.get('error') or 'no reason given'}")
    if not datasets:
        output.hint("the workspace declares no datasets (under `datasets:` in modelrunner.yaml)")
    elif any(d["version_count"] == 0 for d in datasets):
        output.hint("record the versions of a dataset with `modelrunner data sync NAME`")


@data_app.command("versions")
def versions(
    name: DatasetName,
    limit: Annotated[
        int, typer.Option(envvar="MODELRUNNER_LIMIT", min=1, max=1000, help="Show at most this many versions.")
    ] = 20,
    json_output: options.Json = False,
    server: options.Server = options.DEFAULT,
) -> None:
    """List a dataset's recorded versions, newest data first."""
    with Client(server) as client:
        found = client.dataset_versions(name, limit)
    if json_output:
        output.print_json(found)
        return
    authored = any(item.get("author") for item in found)  # a managed dataset's changes
    table = output.table("version", "time", "discovered", "files", "size", *(["by"] if authored else []), "summary")
    for item in found:
        table.add_row(
            item["version"][:SHORT],
            output.when(item["time"]),
            output.when(item["discovered_at"]),
            str(item["file_count"]),
            output.size(int(item["total_size"])),
            *([output.cell(item.get("author") or "")] if authored else []),
            output.cell(item["summary"]),
        )
    output.stdout().print(table)
    if not found:
        output.hint(f"no versions recorded yet: modelrunner data sync {name}")


@data_app.command("show")
def show(
    name: DatasetName,
    version: Annotated[
        str, typer.Argument(help="The version id, or a unique prefix of it (4 characters or more).", show_default=False)
    ],
    json_output: options.Json = False,
    server: options.Server = options.DEFAULT,
) -> None:
    """Show one version of a dataset: when its data changed, when it was discovered, its files and sizes."""
    with Client(server) as client:
        found = client.dataset_version(name, version)
    if json_output:
        output.print_json(found)
        return
    console = output.stdout()
    fields = output.table("field", "value")
    fields.show_header = False
    rows = [
        ("dataset", name),
        ("version", found["version"]),
        ("time", output.when(found["time"])),
        ("discovered", output.when(found["discovered_at"])),
        ("summary", found["summary"]),
        ("files", f"{found['file_count']} ({output.size(int(found['total_size']))})"),
    ]
    for field, value in rows:
        if value:
            fields.add_row(field, output.cell(value))
    console.print(fields)
    files = output.table("path", "size", title="files")
    for item in found["files"]:
        files.add_row(output.cell(item["path"]), output.size(int(item["size"])))
    console.print(files)


@data_app.command("sync")
def sync(
    name: DatasetName,
    walk_all: Annotated[
        bool,
        typer.Option(
            "--all",
            envvar="MODELRUNNER_SYNC_ALL",
            help="Walk the whole history (git), not only what is newer than known.",
        ),
    ] = False,
    delete: Annotated[
        bool,
        typer.Option(
            "--delete",
            envvar="MODELRUNNER_SYNC_DELETE",
            help="Instead of syncing, forget every recorded version (refused while runs using them are unfinished).",
        ),
    ] = False,
    no_wait: Annotated[
        bool,
        typer.Option("--no-wait", envvar="MODELRUNNER_SYNC_NO_WAIT", help="Return once the sync is queued."),
    ] = False,
    json_output: options.Json = False,
    server: options.Server = options.DEFAULT,
) -> None:
    """Record the new versions of a dataset, following the sync with a progress bar.

    A sync stops at the first version already recorded; `--all` walks the whole history instead.
    If a sync of the dataset is already running, this follows that one. Exit 1 if it fails.
    """
    if delete and walk_all:
        raise typer.BadParameter("--delete forgets versions; it cannot be combined with --all", param_hint="--delete")
    with Client(server) as client:
        if delete:
            deleted = client.delete_dataset_versions(name)
            if json_output:
                output.print_json({"deleted": deleted})
            else:
                output.stdout().print(output.cell(f"removed {_versions(deleted)} of {name}"))
            return
        started = client.request_sync(name, walk_all)
        if started.get("joined"):
            output.hint(f"a sync of {name} was already {started['status']} (sync {started['id']}); following it")
        if no_wait:
            _report_queued(started, json_output)
            return
        finished = _follow(client, started)
        newest = client.dataset(name).get("newest") if finished["status"] == "succeeded" else None
    if json_output:
        output.print_json({**finished, "joined": started.get("joined", False), "newest": newest})
    elif finished["status"] == "succeeded":
        output.stdout().print(_outcome(finished, newest))
    else:
        output.error(f"sync {finished['id']} of {name} failed: {finished.get('error') or 'no reason given'}")
    raise typer.Exit(0 if finished["status"] == "succeeded" else 1)


def _report_queued(started: dict[str, Any], json_output: bool) -> None:
    if json_output:
        output.print_json(started)
        return
    output.stdout().print(
        Text(f"sync {started['id']} of {started['dataset']}: ").append_text(output.status(started["status"]))
    )
    output.hint(f"follow it: modelrunner data sync {started['dataset']} (joins the sync in progress)")


def _follow(client: Client, started: dict[str, Any]) -> dict[str, Any]:
    """Poll the sync until it ends, showing its progress. Ctrl-C stops waiting, not the sync."""
    name = started["dataset"]
    try:
        return follow(f"sync {started['id']} ({name})", started, lambda: client.sync(name, started["id"]), _SYNC_FINAL)
    except KeyboardInterrupt:
        output.stderr().print(f"stopped waiting; sync {started['id']} continues on the server", markup=False)
        raise typer.Exit(130) from None


def _outcome(finished: dict[str, Any], newest: dict[str, Any] | None) -> Text:
    """``2 new versions, newest 1a2b3c4d5e6f (2024-01-01 00:02:00)`` or ``no new version; ...``."""
    added = int(finished.get("added") or 0)
    head = f"{added} new version{'s' if added != 1 else ''}" if added else "no new version"
    if newest is None:
        return output.cell(f"{head}; the dataset has no versions")
    shown = f"{newest['version'][:SHORT]} ({output.when(newest['time'])})"
    return output.cell(f"{head}, newest {shown}" if added else f"{head}; newest {shown}")


def _versions(count: int) -> str:
    return f"{count} version{'s' if count != 1 else ''}"


def _sync_cell(last: dict[str, Any] | None) -> Text:
    if not last:
        return Text("never")
    cell = output.status(last["status"])
    moment = last.get("finished_at") or last.get("started_at") or last.get("created_at")
    if moment:
        cell.append(f" {output.when(moment)}")
    return cell


@data_app.command("put")
def put(
    name: DatasetName,
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Files or folders to put; a folder goes in with its own name and everything below it.",
            show_default=False,
            exists=True,
        ),
    ],
    to: Annotated[
        str,
        typer.Option("--to", envvar="MODELRUNNER_DATA_TO", metavar="FOLDER", help="Put them below this folder."),
    ] = "",
    message: Annotated[
        str,
        typer.Option("--message", "-m", envvar="MODELRUNNER_DATA_MESSAGE", help="Why: kept with the new version."),
    ] = "",
    base: Annotated[
        str | None,
        typer.Option(
            envvar="MODELRUNNER_DATA_BASE",
            metavar="VERSION",
            help="Refuse the change if the dataset's newest version is not this one (someone changed it meanwhile).",
        ),
    ] = None,
    json_output: options.Json = False,
    server: options.Server = options.DEFAULT,
) -> None:
    """Put files into a managed dataset (source: managed): one new version, recording you and the
    message. The dataset's write rules say which folders your groups may change.

    Example: `modelrunner data put paris scenario-x/ --to scenarios -m "more lanes on the A4"`
    """
    files = _files_to_put(paths, to.strip().strip("/"))
    with Client(server) as client:
        change = client.change_dataset(name, files, message, base)
    if json_output:
        output.print_json(change)
        return
    version = change.get("version")
    if version is None:
        output.stdout().print(
            f"no change: {name} already holds these files (version {(change['parent'] or '')[:SHORT]})"
        )
        return
    output.stdout().print(
        f"{name}: new version {version['version'][:SHORT]} ({version['file_count']} files) by {version['author']}"
    )


@data_app.command("rm")
def remove(
    name: DatasetName,
    paths: Annotated[list[str], typer.Argument(help="Paths of files in the dataset.", show_default=False)],
    message: Annotated[
        str,
        typer.Option("--message", "-m", envvar="MODELRUNNER_DATA_MESSAGE", help="Why: kept with the new version."),
    ] = "",
    json_output: options.Json = False,
    server: options.Server = options.DEFAULT,
) -> None:
    """Remove files from a managed dataset: one new version, recording you and the message."""
    with Client(server) as client:
        change = client.change_dataset(name, [], message, None, remove=paths)
    if json_output:
        output.print_json(change)
        return
    version = change["version"]
    output.stdout().print(f"{name}: new version {version['version'][:SHORT]} ({version['file_count']} files)")


@data_app.command("diff")
def diff(
    name: DatasetName,
    old: Annotated[str, typer.Argument(help="The older version (a unique prefix is enough).", show_default=False)],
    new: Annotated[str, typer.Argument(help="The newer version (a unique prefix is enough).", show_default=False)],
    json_output: options.Json = False,
    server: options.Server = options.DEFAULT,
) -> None:
    """What changed between two versions of a dataset: files added, removed and changed."""
    with Client(server) as client:
        changes = client.dataset_diff(name, old, new)
    if json_output:
        output.print_json(changes)
        return
    for mark, key in (("+", "added"), ("-", "removed"), ("~", "changed")):
        for path in changes[key]:
            output.stdout().print(Text(f"{mark} {path}"))
    if not any(changes[key] for key in ("added", "removed", "changed")):
        output.stdout().print("no file differs")


def _files_to_put(paths: list[Path], to: str) -> list[tuple[str, Path]]:
    """(path in the dataset, local file) for every file of ``paths``."""
    found: list[tuple[str, Path]] = []
    for path in paths:
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                found.append((str(PurePosixPath(path.resolve().name, *file.relative_to(path).parts)), file))
        else:
            found.append((path.name, path))
    return [(f"{to}/{inside}" if to else inside, file) for inside, file in found]
