"""Files given on the command line: ``-p network=@links.geojson`` uploads the file as the value of a
file parameter (``format: file``); the bytes sent are shown on a progress bar when the file is big."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, Any

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from modelrunner.cli import output
from modelrunner.errors import ModelrunnerError

_BAR_FROM = 4 << 20  # files from this size on are shown with a progress bar


def split_files(schema: dict[str, Any], assignments: list[str] | None) -> tuple[list[str], dict[str, Path]]:
    """The ``name=value`` assignments without the ``name=@PATH`` ones of file parameters, and
    those files by parameter name. A file that cannot be read is a one-line error."""
    properties = schema.get("properties", {}) if isinstance(schema, dict) else {}
    kept: list[str] = []
    files: dict[str, Path] = {}
    for assignment in assignments or []:
        name, _, text = assignment.partition("=")
        name = name.strip()
        declared = properties.get(name)
        if not (text.startswith("@") and isinstance(declared, dict) and declared.get("format") == "file"):
            kept.append(assignment)
            continue
        path = Path(text[1:]).expanduser()
        if not path.is_file():
            raise ModelrunnerError(f"-p {name}=@{path}: no such file")
        files[name] = path
    return kept, files


class _CountingReader:
    """A file whose reads move a progress bar."""

    def __init__(self, handle: IO[bytes], advance: Any) -> None:
        self._handle = handle
        self._advance = advance

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        self._advance(len(chunk))
        return chunk


@contextmanager
def _progress(total: int, what: str) -> Iterator[Any]:
    """A function to call with each chunk's size: it moves a progress bar when ``total`` is big."""
    if total < _BAR_FROM:
        yield lambda size: None
        return
    columns = (TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=output.stderr()) as progress:
        task = progress.add_task(f"uploading {what}", total=total)
        yield lambda size: progress.advance(task, size)


@contextmanager
def dataset_parts(files: list[tuple[str, Path]]) -> Iterator[list[tuple[str, Any]]]:
    """The file parts of a dataset change (``POST /datasets/{name}/files``): each one's file name
    is its path in the dataset."""
    total = sum(local.stat().st_size for _, local in files)
    with ExitStack() as stack:
        advance = stack.enter_context(_progress(total, f"{len(files)} file(s)"))
        parts = []
        for inside, local in files:
            try:
                handle = stack.enter_context(local.open("rb"))
            except OSError as exc:
                raise ModelrunnerError(f"cannot read {local}: {exc.strerror or exc}") from exc
            parts.append(("file", (inside, _CountingReader(handle, advance), "application/octet-stream")))
        yield parts


@contextmanager
def upload_parts(body: dict[str, Any], files: dict[str, Path]) -> Iterator[tuple[dict[str, str], dict[str, Any]]]:
    """The form fields and files of a multipart submit (``POST .../runs/upload``), read as httpx
    sends them, behind one progress bar when they are big."""
    total = sum(path.stat().st_size for path in files.values())
    with ExitStack() as stack:
        advance: Any = lambda size: None  # noqa: E731 - a small file shows no bar
        if total >= _BAR_FROM:
            progress = stack.enter_context(
                Progress(
                    TextColumn("{task.description}", markup=False),
                    BarColumn(),
                    DownloadColumn(),
                    TransferSpeedColumn(),
                    console=output.stderr(),
                )
            )
            task = progress.add_task("uploading " + ", ".join(p.name for p in files.values()), total=total)
            advance = lambda size: progress.advance(task, size)  # noqa: E731
        parts: dict[str, Any] = {}
        for name, path in files.items():
            try:
                handle = stack.enter_context(path.open("rb"))
            except OSError as exc:
                raise ModelrunnerError(f"cannot read {path}: {exc.strerror or exc}") from exc
            parts[name] = (path.name, _CountingReader(handle, advance), "application/octet-stream")
        yield {"request": json.dumps(body)}, parts
