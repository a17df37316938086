"""Which files of a local folder may be uploaded: regular files that live inside it.

A model writes its outputs folder (and its checkpoint folder) as it likes. A symbolic link there
would upload whatever it points at (the server's database, /etc/hostname), a hard link a file
outside the folder that the model could link but not otherwise publish, a FIFO would block the
upload and a device would read the machine. So every upload of a folder goes through
:func:`scan`, which refuses those, and reads each file through :func:`open_regular`, which opens
it without following a symbolic link and checks that it is still the file the scan found.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from modelrunner.artifacts.keys import UnsafeKey, clean_key
from modelrunner.errors import ModelrunnerError


class NotRegularFile(ModelrunnerError):
    """A path that is not (or no longer) a regular file that may be uploaded."""


@dataclass(frozen=True)
class RegularFile:
    """A regular file found inside a folder, and which file it was (so a swap is noticed)."""

    path: Path
    relative: str  # below the scanned folder, '/'-separated
    device: int
    inode: int
    links: int


@dataclass(frozen=True)
class RefusedFile:
    """Something inside a folder that is not uploaded, and why (in words for the run's log)."""

    relative: str
    reason: str


@dataclass(frozen=True)
class FolderScan:
    files: list[RegularFile]  # sorted by relative path
    refused: list[RefusedFile]  # sorted by relative path


def scan(folder: Path) -> FolderScan:
    """The regular files below ``folder``, and what else is there: symbolic links (never
    followed), FIFOs, sockets, devices, and hard links to files outside the folder (a file with
    more links than the folder holds to it)."""
    found: list[tuple[str, Path, os.stat_result]] = []
    refused: list[RefusedFile] = []
    _walk(folder, "", found, refused)
    inside: dict[tuple[int, int], int] = {}
    for _, _, info in found:
        identity = (info.st_dev, info.st_ino)
        inside[identity] = inside.get(identity, 0) + 1
    files = []
    for relative, path, info in found:
        links_inside = inside[(info.st_dev, info.st_ino)]
        if info.st_nlink > links_inside:
            reason = f"a hard link to a file outside the folder ({info.st_nlink} links, {links_inside} of them inside)"
            refused.append(RefusedFile(relative, reason))
        else:
            files.append(RegularFile(path, relative, info.st_dev, info.st_ino, info.st_nlink))
    return FolderScan(sorted(files, key=lambda f: f.relative), sorted(refused, key=lambda r: r.relative))


def open_regular(path: Path, expected: RegularFile | None = None) -> BinaryIO:
    """``path`` opened for reading, once it is a regular file with a single link (or, with
    ``expected``, the very file a scan found, with as many links); NotRegularFile otherwise. A
    symbolic link is never followed, and a FIFO does not block the call."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if os.path.islink(path):
            raise NotRegularFile(f"{path} is a symbolic link, not a regular file") from exc
        raise
    try:
        info = os.fstat(descriptor)
        problem = _kind_problem(info)
        if problem is None and expected is not None and (info.st_dev, info.st_ino) != (expected.device, expected.inode):
            problem = "another file than the one found before (replaced meanwhile)"
        elif problem is None and info.st_nlink > (expected.links if expected is not None else 1):
            problem = f"a hard link ({info.st_nlink} links)"
        if problem is not None:
            raise NotRegularFile(f"{path} is {problem}, not a regular file that may be uploaded")
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def _walk(folder: Path, prefix: str, found: list[tuple[str, Path, os.stat_result]], refused: list[RefusedFile]) -> None:
    with os.scandir(folder) as entries:
        for entry in entries:
            relative = f"{prefix}{entry.name}"
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                _walk(Path(entry.path), f"{relative}/", found, refused)
            elif stat.S_ISREG(info.st_mode):
                try:
                    clean_key(relative, "its name")
                except UnsafeKey as exc:  # a backslash, or "%2e%2e": legal on disk, no key
                    refused.append(RefusedFile(relative, f"named so that it cannot be stored ({exc.message})"))
                    continue
                found.append((relative, Path(entry.path), info))
            elif stat.S_ISLNK(info.st_mode):
                refused.append(RefusedFile(relative, f"a symbolic link (to {os.readlink(entry.path)})"))
            else:
                refused.append(RefusedFile(relative, _kind_problem(info) or "not a regular file"))


def _kind_problem(info: os.stat_result) -> str | None:
    mode = info.st_mode
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"
