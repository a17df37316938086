"""Run logs: one append-only text file per attempt in the state folder, read as one stream."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path


def logs_folder(state_dir: Path) -> Path:
    """Where a server with this state folder keeps its run logs (outside the artifact store)."""
    return state_dir / "logs"


class LogStore:
    """``<root>/<run id>/<attempt number>.log``; readers page through all attempts by offset."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._appending = threading.Lock()

    def path(self, run_id: int, attempt_number: int) -> Path:
        folder = self.root / str(run_id)
        folder.mkdir(exist_ok=True)
        return folder / f"{attempt_number}.log"

    def append(self, run_id: int, attempt_number: int, offset: int, data: bytes) -> int:
        """Write the bytes of an attempt's log from ``offset`` on; the log's size afterwards.
        Bytes the store has already are skipped, so a runner may send a chunk again, and one that
        leaves a gap is refused (the size tells the sender where to go on from)."""
        with self._appending, self.path(run_id, attempt_number).open("ab") as handle:
            size = handle.tell()
            if offset <= size < offset + len(data):
                handle.write(data[size - offset :])
            return handle.tell()

    def read(self, run_id: int, offset: int, limit: int) -> LogPage:
        """At most ``limit`` bytes of the run's log (every attempt, in order) from ``offset`` on.
        Memory stays within ``limit`` whatever the log's size: each attempt's file is sized, and
        only the bytes asked for are read from it."""
        parts = self._parts(run_id)
        size = sum(part.size for part in parts)
        page = bytearray()
        position = 0
        for part in parts:
            if offset < position + part.size and len(page) < limit:
                start = max(offset - position, 0)
                page += part.read(start, min(part.size - start, limit - len(page)))
            position += part.size
        return LogPage(bytes(page), min(offset, size) + len(page), size)

    def size(self, run_id: int) -> int:
        """The size of the run's log (all attempts, with the lines between them) so far."""
        return sum(part.size for part in self._parts(run_id))

    def _parts(self, run_id: int) -> list[_Part]:
        """The log in pieces: attempt 1's file, a line naming attempt 2, attempt 2's file..."""
        folder = self.root / str(run_id)
        files = sorted(folder.glob("*.log"), key=lambda p: int(p.stem)) if folder.is_dir() else []
        parts: list[_Part] = []
        for index, path in enumerate(files):
            if index:
                separator = f"\n--- attempt {path.stem} ---\n".encode()
                parts.append(_Part(len(separator), text=separator))
            parts.append(_Part(path.stat().st_size, path=path))
        return parts


@dataclass(frozen=True)
class LogPage:
    """Bytes of a run's log from an offset; ``offset`` is where the next page starts, ``size``
    the log's size when it was read (``offset < size``: there is more to read now)."""

    data: bytes
    offset: int
    size: int


@dataclass(frozen=True)
class _Part:
    """A piece of a run's log: a file, or the line between two attempts' files. A file's size is
    taken once per read, so a file that grows meanwhile adds nothing to this page."""

    size: int
    path: Path | None = None
    text: bytes = b""

    def read(self, start: int, count: int) -> bytes:
        if self.path is None:
            return self.text[start : start + count]
        with self.path.open("rb") as handle:
            handle.seek(start)
            return handle.read(count)
