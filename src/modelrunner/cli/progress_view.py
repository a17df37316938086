"""The progress bar of one run (on the server or local), fed with fraction, message and status."""

from __future__ import annotations

from types import TracebackType

from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

from modelrunner.cli import output

_FINAL = frozenset({"succeeded", "failed", "timed_out", "cancelled"})


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
