"""Run logs: one append-only text file per attempt in the state folder, read as one stream."""

from __future__ import annotations

import threading
from pathlib import Path


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

    def read(self, run_id: int, offset: int = 0) -> tuple[bytes, int]:
        """The bytes after ``offset`` of the run's log (every attempt, in order) and the new offset."""
        folder = self.root / str(run_id)
        files = sorted(folder.glob("*.log"), key=lambda p: int(p.stem)) if folder.is_dir() else []
        combined = bytearray()
        for index, path in enumerate(files):
            if index:
                combined += f"\n--- attempt {path.stem} ---\n".encode()
            combined += path.read_bytes()
        return bytes(combined[offset:]), len(combined)
