"""How the command line shows things: the two consoles, tables, sizes, times and JSON (sizes and
durations in the format of ``modelrunner.units``, as the web pages show them)."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from modelrunner import units
from modelrunner.units import size as size  # the CLI shows sizes as the web pages do

# When output goes to a file or a pipe, Rich would wrap at 80 columns and cut sha256 digests.
_PIPED_WIDTH = 200


def _console(stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or "COLUMNS" in os.environ else _PIPED_WIDTH
    return Console(stderr=stderr, highlight=False, width=width)


def stdout() -> Console:
    """The console for results (what a script would capture)."""
    return _console(stderr=False)


def stderr() -> Console:
    """The console for errors, hints and progress bars (kept out of captured results)."""
    return _console(stderr=True)


def error(message: str) -> None:
    """Print ``error: message`` on stderr (each line of it), as plain text, never as Rich markup."""
    console = stderr()
    for line in message.splitlines() or [""]:
        console.print(Text(f"error: {line}", style="red"))


def hint(message: str) -> None:
    """Print a plain hint on stderr."""
    stderr().print(Text(message, style="dim"))


def print_json(value: Any) -> None:
    """Indented JSON on stdout, unstyled so it can be piped into other tools."""
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def table(*columns: str, title: str | None = None) -> Table:
    """A Rich table with these column headers; digests and ids are never wrapped."""
    result = Table(title=title, title_justify="left", show_edge=False, header_style="bold")
    for column in columns:
        result.add_column(column, no_wrap=column in {"id", "sha256", "size"}, overflow="fold")
    return result


def cell(value: object) -> Text:
    """A table cell shown literally (user text may contain brackets Rich would read as markup)."""
    return Text("" if value is None else str(value))


def parse_time(value: str | None) -> dt.datetime | None:
    """An API timestamp as an aware datetime (the store may give naive UTC times)."""
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def when(value: str | None) -> str:
    """An API timestamp in the user's local time, to the second."""
    parsed = parse_time(value)
    return parsed.astimezone().strftime("%Y-%m-%d %H:%M:%S") if parsed else ""


def duration(start: str | None, end: str | None) -> str:
    """Time from ``start`` to ``end`` (or to now while still running), e.g. ``2.4s``, ``3m 5s``."""
    started = parse_time(start)
    if started is None:
        return ""
    finished = parse_time(end) or dt.datetime.now(dt.UTC)
    return units.duration(finished - started)


def percent(fraction: float | None) -> str:
    return "" if fraction is None else f"{fraction:.0%}"


STATUS_STYLES = {
    "succeeded": "green",
    "failed": "red",
    "timed_out": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "starting": "cyan",
    "queued": "blue",
    # A pipeline's steps: one left out on purpose is not one held up by a failure.
    "blocked": "yellow",
    "skipped": "dim",
    "waiting": "blue",
}


def status(value: str) -> Text:
    """A run or attempt status, coloured by how it went."""
    return Text(value, style=STATUS_STYLES.get(value, ""))
