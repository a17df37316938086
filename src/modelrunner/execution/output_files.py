"""What an attempt's outputs folder may hand over: regular files inside it, nothing else.

The upload itself leaves everything else out (``ArtifactStore.put_folder``); this is where the
attempt says so in its log and fails when a declared output is such a thing, and where an attempt
that did not succeed keeps what it wrote as its partial outputs."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from modelrunner.artifacts import regular_files
from modelrunner.artifacts.store import StoredFile


def refuse_irregular(outputs: Path, declared: Sequence[str], log_path: Path) -> str | None:
    """Write a line to the attempt's log for every entry of ``outputs`` that is not a regular file
    inside it (a symbolic link, a hard link to a file outside, a FIFO, a device: none is
    uploaded); the attempt's error when a declared output is one of them, None otherwise."""
    refused = regular_files.scan(outputs).refused
    if not refused:
        return None
    with log_path.open("ab") as log:
        for entry in refused:
            log.write(f"modelrunner: output {entry.relative} is not stored: it is {entry.reason}\n".encode())
    reasons = {entry.relative: entry.reason for entry in refused}
    bad = []
    for path in declared:
        # A declared output below a refused entry (a symbolic link to a folder) is refused too.
        parts = path.split("/")
        held = next((p for p in ("/".join(parts[:n]) for n in range(len(parts), 0, -1)) if p in reasons), None)
        if held is not None:
            bad.append(f"{path} ({held} is {reasons[held]})" if held != path else f"{path} ({reasons[path]})")
    if not bad:
        return None
    return "declared outputs are not regular files inside the outputs folder: " + ", ".join(bad)


def keep_partial(outputs: Path, upload: Callable[[Path], list[StoredFile]], log_path: Path) -> list[StoredFile]:
    """Store what an attempt that did not succeed left in ``outputs`` as its partial outputs,
    with the rules outputs follow: regular files inside the folder, uploaded by ``upload`` as
    outputs are (so the same size limits hold). Each file goes on its own, so one the store
    refuses (over a limit) costs only itself; the attempt's log names what was kept and what
    was not. Never raises: an attempt's ending matters more than its partial outputs.

    ``outputs`` is emptied on the way (each file is moved aside to be uploaded alone): call it
    once the attempt's processes have ended, on a folder that is thrown away afterwards."""
    stored: list[StoredFile] = []
    with log_path.open("ab") as log:
        try:
            if not outputs.is_dir():
                return []
            found = regular_files.scan(outputs)
        except OSError as exc:
            log.write(f"modelrunner: the attempt's partial outputs could not be read: {exc}\n".encode())
            return []
        for entry in found.refused:
            log.write(f"modelrunner: partial output {entry.relative} is not stored: it is {entry.reason}\n".encode())
        alone = outputs.with_name(f"{outputs.name}.partial")
        for file in found.files:
            try:
                shutil.rmtree(alone, ignore_errors=True)
                destination = alone / file.relative
                destination.parent.mkdir(parents=True)
                file.path.rename(destination)  # the same file (inode): the upload's checks still hold
                stored += upload(alone)
            except Exception as exc:  # a store that refuses it (over a limit), a network gone
                log.write(f"modelrunner: partial output {file.relative} is not stored: {exc}\n".encode())
        shutil.rmtree(alone, ignore_errors=True)
        if stored:
            named = ", ".join(f.path for f in stored[:10]) + (", ..." if len(stored) > 10 else "")
            log.write(f"modelrunner: kept {len(stored)} partial output(s) of this attempt: {named}\n".encode())
    return stored
