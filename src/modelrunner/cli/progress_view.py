"""The progress bar of one run or sync (on the server or local), fed with fraction, message and status."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from types import TracebackType
from typing import Any

from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

from modelrunner.cli import output

_FINAL = frozenset({"succeeded", "failed", "timed_out", "cancelled"})
POLL_SECONDS = 0.2


class RunProgress:
    """A Rich progress bar on stderr. An unknown fraction (e.g. while queued) shows as a pulse."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._fraction: float | None = None
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[message]}", markup=False),
            console=output.stderr(),
        )
        self._task = self._progress.add_task(label, total=None, message="")

    def __enter__(self) -> RunProgress:
        self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._progress.stop()

    def update(self, fraction: float | None, message: str | None, status: str | None = None) -> None:
        """Show the latest state; a final status without a fraction keeps the bar where it was."""
        description = f"{self._label} {status}" if status else self._label
        if fraction is None and status in _FINAL:
            fraction = self._fraction or 0.0
        self._fraction = fraction if fraction is not None else self._fraction
        self._progress.update(
            self._task,
            description=description,
            total=None if fraction is None else 1.0,
            completed=fraction or 0.0,
            message=message or "",
        )


def follow(
    label: str, current: dict[str, Any], refresh: Callable[[], dict[str, Any]], final: Collection[str]
) -> dict[str, Any]:
    """Show the progress of a run or sync (as the API gives it: ``status`` and ``progress``),
    asking ``refresh`` for its new state until its status is one of ``final``; its last state."""
    with RunProgress(label) as bar:
        while True:
            progress = current.get("progress") or {}
            bar.update(progress.get("fraction"), progress.get("message"), current["status"])
            if current["status"] in final:
                return current
            time.sleep(POLL_SECONDS)
            current = refresh()
