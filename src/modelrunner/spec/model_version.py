"""The model version: a content hash of the model folder, and its snapshot as a tar archive.

One function, :func:`model_files`, decides which files make up a model: the hash, the snapshot
and the copy an attempt runs in all follow it.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import pathspec

# A model's own list of what it leaves out, in gitignore syntax.
IGNORE_FILE = ".modelrunnerignore"

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
    """The files that make up a model, sorted, relative to ``folder``: all but the byproducts
    (``.venv``, ``.git``, ``__pycache__``, ... and compiled or editor files) and what the
    folder's ``.modelrunnerignore`` names."""
    ignored = _ignore_spec(folder)
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        relative_root = Path(root).relative_to(folder)
        dirs[:] = sorted(
            d for d in dirs if d not in _IGNORED_DIRS and not ignored((relative_root / d).as_posix() + "/")
        )
        for name in files:
            relative = relative_root / name
            if not name.endswith(_IGNORED_SUFFIXES) and not ignored(relative.as_posix()):
                found.append(relative)
    return sorted(found)


def left_out(folder: Path, relative: PurePosixPath) -> str | None:
    """Why the file ``relative`` (to the model ``folder``) is not among the model's files (the
    reason names the folder or the ignore file), or None when it is one of them or does not exist."""
    parts = PurePosixPath(os.path.normpath(relative.as_posix())).parts
    for depth, part in enumerate(parts[:-1]):
        if part in _IGNORED_DIRS:
            return f"the folder copy leaves {'/'.join(parts[: depth + 1])} out"
    if not (folder / relative).is_file() or Path(*parts) in set(model_files(folder)):
        return None
    return f"{IGNORE_FILE} leaves it out" if not parts[-1].endswith(_IGNORED_SUFFIXES) else "it is a byproduct file"


def _ignore_spec(folder: Path) -> Callable[[str], bool]:
    """Whether the folder's ignore file leaves out a path (relative, posix, a folder's ending in /)."""
    try:
        lines = (folder / IGNORE_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        lines = []
    return pathspec.GitIgnoreSpec.from_lines(lines).match_file


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
