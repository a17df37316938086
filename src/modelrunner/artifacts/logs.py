"""Run logs: one append-only text file per attempt in the state folder, read as one stream."""

from __future__ import annotations

from pathlib import Path


class LogStore:
    """``<root>/<run id>/<attempt number>.log``; readers page through all attempts by offset."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, run_id: int, attempt_number: int) -> Path:
        folder = self.root / str(run_id)
        folder.mkdir(exist_ok=True)
        return folder / f"{attempt_number}.log"

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
