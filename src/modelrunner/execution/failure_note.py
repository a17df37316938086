"""A model's own word on why it failed: one line it may write to the file ``MODELRUNNER_FAILURE_NOTE``
names, which the attempt's error then ends with (the notebook runner names the failing cell there).

The file is in the scratch folder, which the model owns: it is read as untrusted, never followed
through a link, and only its first line, cut short."""

from __future__ import annotations

import os
import stat
from pathlib import Path

FAILURE_NOTE = "MODELRUNNER_FAILURE_NOTE"
NOTE_FILE = "failure-note"
LONGEST_NOTE = 500


def read_failure_note(path: Path) -> str | None:
    """The first line of the note at ``path`` (at most LONGEST_NOTE characters, printable only);
    None when there is no note, or when the path is anything but a regular file of its own (a
    link to another file must not bring that file's text into an error message)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        found = os.fstat(descriptor)
        if not stat.S_ISREG(found.st_mode) or found.st_nlink != 1:
            return None
        head = os.read(descriptor, LONGEST_NOTE * 4).decode("utf-8", "replace")
    finally:
        os.close(descriptor)
    lines = head.strip().splitlines()
    line = "".join(c for c in lines[0] if c.isprintable()).strip() if lines else ""
    return line[:LONGEST_NOTE] or None
