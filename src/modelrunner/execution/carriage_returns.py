"""What of a model's output reaches its log when the model overwrites a line with ``\\r``, as
progress bars do: the line as a terminal would show it at its end, not every update before it.

A bar that updates 10,000 times would otherwise leave 10,000 copies of itself on one line of the
log, which a log page (HTML reads a lone ``\\r`` as a line break) shows as 10,000 lines. A line
overwritten for a long time is logged as it stands every ``snapshot_seconds``, so a log followed
while the model runs still moves. Text before a line's first ``\\r`` and lines without one reach
the log at once and unchanged, ``\\r\\n`` line ends included.
"""

from __future__ import annotations

import time
from collections.abc import Callable

SNAPSHOT_SECONDS = 10.0
_LONGEST_HELD = 65536  # a longer update is logged as it comes rather than held


class OverwrittenLines:
    """Turns a stream of output chunks into what the log gets (see the module's docstring)."""

    def __init__(self, snapshot_seconds: float = SNAPSHOT_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._snapshot_seconds = snapshot_seconds
        self._clock = clock
        self._line_started = False  # part of the current line is in the log already
        self._overwriting = False  # a \r came on the current line: its updates are held back
        self._held = b""  # the current line's text since its last \r
        self._shown = b""  # the last update of the current line with something in it
        self._snapshot = b""  # what the last snapshot of the current line logged
        self._since = 0.0  # when the current line was last logged
        self._carriage = False  # the last chunk ended with \r: perhaps the first half of \r\n

    def feed(self, chunk: bytes) -> bytes:
        """What of ``chunk`` the log gets now."""
        if not self._overwriting and not self._carriage and b"\r" not in chunk:
            # Most output: no \r anywhere, so all of it goes to the log as it is.
            self._line_started = bool(chunk) and not chunk.endswith(b"\n")
            return chunk
        if self._carriage:
            chunk, self._carriage = b"\r" + chunk, False
        if chunk.endswith(b"\r"):
            chunk, self._carriage = chunk[:-1], True
        *lines, rest = chunk.split(b"\n")
        logged = [self._end_line(line) for line in lines]
        logged.append(self._continue_line(rest))
        return b"".join(logged)

    def finish(self) -> bytes:
        """What the log gets when the output has ended."""
        logged = self._continue_line(b"\r") if self._carriage else b""
        self._carriage = False
        if self._overwriting and not self._in_snapshot():
            logged += self._visible()
        return logged

    def _continue_line(self, text: bytes, snapshots: bool = True) -> bytes:
        if not self._overwriting:
            if b"\r" not in text:
                self._line_started = self._line_started or bool(text)
                return text
            start, _, text = text.partition(b"\r")
            self._line_started = self._line_started or bool(start)
            self._overwriting, self._held, self._since = True, b"", self._clock()
            logged = start
        else:
            logged = b""
        *updates, self._held = (self._held + text).split(b"\r")
        for update in updates:
            if update.strip():
                self._shown = update
        if len(self._held) > _LONGEST_HELD:
            logged += self._visible()
            self._held = self._shown = self._snapshot = b""
            self._overwriting, self._line_started = False, True
        elif snapshots and self._clock() - self._since >= self._snapshot_seconds:
            logged += self._take_snapshot()
        return logged

    def _end_line(self, line: bytes) -> bytes:
        crlf = line.endswith(b"\r")
        ending = b"\r\n" if crlf else b"\n"
        if crlf:
            line = line[:-1]
        if not self._overwriting and b"\r" not in line:
            self._line_started = False
            return line + ending
        logged = self._continue_line(line, snapshots=False)
        if not self._in_snapshot():  # else the snapshot just logged shows the line already
            logged += self._visible() + ending
        self._overwriting = self._line_started = False
        self._held = self._shown = self._snapshot = b""
        return logged

    def _visible(self) -> bytes:
        """The current line as it stands, ``\\r`` first if its start is in the log already."""
        shown = self._held if self._held.strip() else self._shown
        return (b"\r" if self._line_started and shown else b"") + shown

    def _in_snapshot(self) -> bool:
        """Whether the last snapshot shows the current line as it stands, and nothing came after it."""
        return bool(self._snapshot) and not self._line_started and self._visible() == self._snapshot

    def _take_snapshot(self) -> bytes:
        shown = self._held if self._held.strip() else self._shown
        if not shown or shown == self._snapshot:
            return b""
        logged = self._visible() + b"\n"
        self._snapshot, self._line_started, self._since = shown, False, self._clock()
        return logged
