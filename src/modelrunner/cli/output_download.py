"""Downloading a run's outputs into a folder, each file checked against its listed sha256."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from modelrunner.cli import output
from modelrunner.cli.client import Client
from modelrunner.errors import ModelrunnerError


def download_outputs(client: Client, outputs: list[dict[str, Any]], folder: Path) -> list[Path]:
    """Save every output below ``folder`` (keeping its relative path); return the files written.

    A file whose bytes do not match its sha256 is removed and raises ModelrunnerError, as does a
    folder that cannot be written (before anything is downloaded, where that can be seen at once).
    """
    with _writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
    targets = [(item, _target(folder, item["path"])) for item in outputs]
    total = sum(int(item["size"]) for item in outputs)
    written: list[Path] = []
    with Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=output.stderr(),
    ) as progress:
        task = progress.add_task(f"downloading {len(outputs)} files", total=total)
        for item, target in targets:
            progress.update(task, description=item["path"])
            _download_one(client, item, target, lambda n: progress.advance(task, n))
            written.append(target)
        progress.update(task, description=f"downloaded {len(outputs)} files")
    return written


def _target(folder: Path, relative: str) -> Path:
    root = folder.resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or target == root:
        raise ModelrunnerError(f"the server listed an output path outside the download folder: {relative!r}")
    return target


@contextmanager
def _writing(place: Path) -> Iterator[None]:
    """An OSError while writing ``place`` (unwritable, a file in the way, a full disk) as a message."""
    try:
        yield
    except OSError as exc:
        raise ModelrunnerError(f"cannot save outputs in {place}: {exc.strerror or exc}") from exc


def _download_one(client: Client, item: dict[str, Any], target: Path, advance: Callable[[int], None]) -> None:
    with _writing(target.parent):
        target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    try:
        with client.download(item["url"]) as chunks, _writing(target.parent), partial.open("wb") as handle:
            for chunk in chunks:
                digest.update(chunk)
                handle.write(chunk)
                advance(len(chunk))
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if digest.hexdigest() != item["sha256"]:
        partial.unlink(missing_ok=True)
        raise ModelrunnerError(
            f"{item['path']}: the downloaded bytes have sha256 {digest.hexdigest()}, "
            f"not {item['sha256']} as listed; nothing was saved for it"
        )
    with _writing(target.parent):
        partial.replace(target)
