"""Progress bars that models print (tqdm's, Keras'), read as the run's progress with no change to
the model, and held to a pace the store can take.

tqdm writes each update as ``\\r`` and the whole bar, never a newline until the bar closes:
``\\rFitting:  45%|████▌     | 45/100 [00:04<00:05, 9.9it/s]``; with ``unit_scale`` the counts read
``1.23k/2.00k``. Keras writes ``45/100 [=========>....] - ETA: 2s``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

OnProgress = Callable[[float, str], None]

_NUMBER = rb"\d+(?:\.\d+)?[kMGTPEZY]?"
# The counts need what tqdm writes after them (a space or its "[elapsed<remaining]"): a bar cut by
# a pipe read ("45/1") then falls back to its percentage instead of reading a wrong total.
_TQDM = re.compile(
    rb"^(?:(?P<desc>.*?): )?\s*(?P<percent>\d{1,3})%\|[^|]*\|"
    rb"(?:\s*(?P<n>" + _NUMBER + rb")/(?P<total>" + _NUMBER + rb")(?=[\s\[]))?"
)
_KERAS = re.compile(rb"^\s*(?P<n>\d+)/(?P<total>\d+) \[[=>.]*\]")
# tqdm draws a nested bar on the line below the outer one's and moves the cursor back up after it.
_CURSOR_UP = b"\x1b[A"
_SCALE = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, "Z": 1e21, "Y": 1e24}

# A bar's readings become progress at most this often (its end always does): a fast loop prints
# thousands, and each change of a run's progress is a write and an event in the store.
REPORT_SECONDS = 1.0


def read_bar(text: bytes) -> tuple[float, str] | None:
    """The fraction done and a message (``"Fitting 45/100"``) of one progress bar as printed (one
    ``\\r``-separated update, without its line end), or None when ``text`` is no bar."""
    if b"%|" not in text and b" [" not in text:
        return None  # most lines: no bar, found without a regular expression
    if _CURSOR_UP in text:
        return None  # a bar nested below another (tqdm's position > 0): the outer one is the progress
    found = _TQDM.match(text)
    if found is not None:
        fraction = _counted(found["n"], found["total"])
        if fraction is None:
            fraction = min(int(found["percent"]), 100) / 100
        return fraction, _message(found["desc"], found["n"], found["total"])
    found = _KERAS.match(text)
    if found is not None:
        fraction = _counted(found["n"], found["total"])
        if fraction is not None:
            return fraction, _message(None, found["n"], found["total"])
    return None


def _counted(done: bytes | None, total: bytes | None) -> float | None:
    if done is None or total is None:
        return None
    denominator = _number(total)
    if denominator <= 0:
        return None
    return min(max(_number(done) / denominator, 0.0), 1.0)


def _number(text: bytes) -> float:
    decoded = text.decode("ascii")
    suffix = decoded[-1] if decoded[-1] in _SCALE else ""
    return float(decoded.removesuffix(suffix) if suffix else decoded) * _SCALE[suffix]


def _message(desc: bytes | None, done: bytes | None, total: bytes | None) -> str:
    words = [desc.decode("utf-8", "replace").strip()] if desc else []
    if done is not None and total is not None:
        words.append(f"{done.decode()}/{total.decode()}")
    return " ".join(word for word in words if word)


class BarReports:
    """Which readings of bars become progress: a bar's end (100 %) and a change at least
    ``interval`` seconds after the last one reported; a reading held back meanwhile is reported
    by :meth:`flush` (at the end of the output) unless a newer one replaced it."""

    def __init__(
        self, on_progress: OnProgress, interval: float = REPORT_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._on_progress = on_progress
        self._interval = interval
        self._clock = clock
        self._last: tuple[float, str] | None = None
        self._last_at = -float("inf")
        self._held: tuple[float, str] | None = None

    def saw(self, fraction: float, message: str) -> None:
        reading = (fraction, message)
        if reading == self._last:
            self._held = None
            return
        now = self._clock()
        if fraction >= 1.0 or now - self._last_at >= self._interval:
            self._report(reading, now)
        else:
            self._held = reading

    def flush(self) -> None:
        if self._held is not None:
            self._report(self._held, self._clock())

    def drop(self) -> None:
        """Forget the reading held back (the model reports its progress itself now)."""
        self._held = None

    def _report(self, reading: tuple[float, str], now: float) -> None:
        self._last, self._last_at, self._held = reading, now, None
        self._on_progress(*reading)
