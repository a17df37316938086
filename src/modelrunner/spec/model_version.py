"""The model version: a content hash of the model folder, and its snapshot as a tar archive.

One function, :func:`model_files`, decides which files make up a model: the hash, the snapshot
and the copy an attempt runs in all follow it.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import pathspec

from modelrunner.errors import SpecError

# A model's own list of what it leaves out, in gitignore syntax.
IGNORE_FILE = ".modelrunnerignore"
# The file that marks a workspace's root folder (spec/workspace.py reads it).
WORKSPACE_FILE = "modelrunner.yaml"

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


class LinkRefused(SpecError):
    """A symbolic link in a model folder that cannot be followed: it leaves the workspace, points
    to nothing, or loops back to a folder that holds it."""


def model_files(folder: Path) -> list[Path]:
    """The files that make up a model, sorted, relative to ``folder``: all but the byproducts
    (``.venv``, ``.git``, ``__pycache__``, ... and compiled or editor files) and what the
    folder's ``.modelrunnerignore`` names.

    Symbolic links are followed (a linked folder's files are the model's, under the link's
    name) as long as they stay inside the workspace (the nearest folder above holding
    modelrunner.yaml; the model folder itself without one): LinkRefused names a link that
    leaves it, points to nothing or loops."""
    ignored = _ignore_spec(folder)
    boundary: Path | None = None  # found once a link is
    found: list[Path] = []

    def walk(relative: Path) -> None:
        nonlocal boundary
        try:
            with os.scandir(folder / relative) as listing:
                entries = list(listing)
        except OSError:
            return  # a folder that cannot be listed holds nothing the copy could take (as os.walk had it)
        for entry in entries:
            path = relative / entry.name
            link = entry.is_symlink()  # from the directory listing: no system call per file
            if link and boundary is None:
                boundary = _boundary(folder)
            if entry.is_dir():  # a link to a folder is one
                if entry.name in _IGNORED_DIRS or ignored(path.as_posix() + "/"):
                    continue
                if link:
                    _check_link(folder, path, boundary or folder)
                walk(path)
            elif not entry.name.endswith(_IGNORED_SUFFIXES) and not ignored(path.as_posix()):
                if link:
                    _check_link(folder, path, boundary or folder)
                found.append(path)

    walk(Path())
    return sorted(found)


def _boundary(folder: Path) -> Path:
    """Where a model's links may point: its workspace (the nearest folder above holding
    modelrunner.yaml), or the model folder itself when it is in none."""
    real = folder.resolve()
    for candidate in real.parents:
        if (candidate / WORKSPACE_FILE).is_file():
            return candidate
    return real


def _check_link(folder: Path, relative: Path, boundary: Path) -> None:
    path = folder / relative
    pointed = os.readlink(path)
    target = path.resolve()
    shown = relative.as_posix()
    if not target.is_relative_to(boundary):
        raise LinkRefused(
            f"{shown} links to {pointed}, outside the workspace {boundary}: "
            "a model may only link to files of its workspace (copy the file in instead)",
            problems=[f"{shown}: links outside the workspace"],
        )
    if not target.exists():
        raise LinkRefused(f"{shown} links to {pointed}, which does not exist", problems=[f"{shown}: a broken link"])
    holders = [folder / Path(*relative.parts[:depth]) for depth in range(len(relative.parts))]
    if target.is_dir() and any(holder.resolve().is_relative_to(target) for holder in holders):
        raise LinkRefused(
            f"{shown} links to {pointed}, a folder that holds it: the model would hold itself",
            problems=[f"{shown}: a link loop"],
        )


def left_out(folder: Path, relative: PurePosixPath) -> str | None:
    """Why the file ``relative`` (to the model ``folder``) is not among the model's files (the
    reason names the folder or the ignore file), or None when it is one of them or does not exist."""
    parts = PurePosixPath(os.path.normpath(relative.as_posix())).parts
    for depth, part in enumerate(parts[:-1]):
        if part in _IGNORED_DIRS:
            return f"the folder copy leaves {'/'.join(parts[: depth + 1])} out"
    try:
        if not (folder / relative).is_file() or Path(*parts) in set(model_files(folder)):
            return None
    except LinkRefused:
        return None  # the folder's refused link is its problem (Workspace.problems says it), not this file's
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
    """sha256 over every file's relative path, executable bit and bytes; 16 hex digits. A linked
    file counts as the file it points to, as the snapshot holds it: a link and a copy of the same
    content are the same version, with the same snapshot."""
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
    # dereference: a link is stored as the file it points to, as content_hash counts it.
    with tarfile.open(fileobj=buffer, mode="w:gz", dereference=True) as archive:
        for relative in model_files(folder):
            archive.add(folder / relative, arcname=relative.as_posix(), recursive=False)
    return buffer.getvalue()


def copy_model(source: Path, destination: Path) -> None:
    """Copy the files that make up a model (as :func:`model_files` lists them) into ``destination``."""
    for relative in model_files(source):
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / relative, target)


def holds_links(archive_bytes: bytes) -> bool:
    """Whether a snapshot holds a link (one made before :func:`snapshot` followed them)."""
    with tarfile.open(fileobj=io.BytesIO(archive_bytes), mode="r:gz") as archive:
        return any(member.issym() or member.islnk() for member in archive)


def snapshot_digests(archive_bytes: bytes) -> dict[str, str]:
    """Each file of a snapshot with a digest of its executable bit and bytes (16 hex digits)."""
    found: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(archive_bytes), mode="r:gz") as archive:
        for member in archive:
            read = archive.extractfile(member) if member.isfile() else None
            if read is not None:
                digest = hashlib.sha256(b"x" if member.mode & 0o111 else b"-")
                for block in iter(functools.partial(read.read, 1 << 20), b""):
                    digest.update(block)
                found[member.name] = digest.hexdigest()[:16]
    return found


def unpack(archive_bytes: bytes, destination: Path) -> None:
    """Extract a snapshot made by :func:`snapshot` into ``destination``."""
    with tarfile.open(fileobj=io.BytesIO(archive_bytes), mode="r:gz") as archive:
        archive.extractall(destination, filter="data")


def file_digest(path: Path) -> str:
    """sha256 of one file's executable bit and bytes (a link: of the file it points to); 16 hex digits."""
    digest = hashlib.sha256(b"x" if os.access(path, os.X_OK) else b"-")
    with path.open("rb") as read:
        for block in iter(lambda: read.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
