"""The model version: a content hash of the model folder, and its snapshot as a tar archive."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
from pathlib import Path

# Byproducts of running or editing a model that are not part of its code.
_IGNORED_DIRS = {
    "__pycache__",
    ".git",
    ".ipynb_checkpoints",
    ".modelrunner",
    ".venv",
    "node_modules",
}
_IGNORED_SUFFIXES = (".pyc", ".pyo", "~", ".swp")


def model_files(folder: Path) -> list[Path]:
    """The files that make up a model, sorted, relative to ``folder``."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in _IGNORED_DIRS)
        for name in files:
            if not name.endswith(_IGNORED_SUFFIXES):
                found.append(Path(root, name).relative_to(folder))
    return sorted(found)


def fingerprint(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """A cheap stand-in for the content: names, sizes and modification times."""
    result = []
    for relative in model_files(folder):
        stat = (folder / relative).stat()
        result.append((relative.as_posix(), stat.st_size, stat.st_mtime_ns))
    return tuple(result)


def content_hash(folder: Path) -> str:
    """sha256 over every file's relative path, executable bit and bytes; 16 hex digits."""
    digest = hashlib.sha256()
    for relative in model_files(folder):
        path = folder / relative
        digest.update(relative.as_posix().encode() + b"\0")
        digest.update(b"x" if os.access(path, os.X_OK) else b"-")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def snapshot(folder: Path) -> bytes:
    """A gzip tar of the model's files, so an attempt runs exactly the version submitted."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for relative in model_files(folder):
            archive.add(folder / relative, arcname=relative.as_posix(), recursive=False)
    return buffer.getvalue()


def copy_model(source: Path, destination: Path) -> None:
    """Copy the files that make up a model (as :func:`model_files` lists them) into ``destination``."""
    for relative in model_files(source):
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / relative, target)


def unpack(archive_bytes: bytes, destination: Path) -> None:
    """Extract a snapshot made by :func:`snapshot` into ``destination``."""
    with tarfile.open(fileobj=io.BytesIO(archive_bytes), mode="r:gz") as archive:
        archive.extractall(destination, filter="data")
