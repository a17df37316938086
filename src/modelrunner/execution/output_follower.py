"""One thread of this process follows what every running attempt prints: a selector over all their
output pipes copies each chunk into the attempt's log as it comes and picks out progress: the
model's ``::progress::`` lines, else the progress bars it prints (tqdm's, see progress_bars.py).
Lines a bar overwrites with ``\r`` reach the log as they end up (see carriage_returns.py).

A thread per attempt did the same at the cost of a thread start per attempt and of one more
thread waking for the interpreter lock at every line; here a burst of attempts adds none."""

from __future__ import annotations

import logging
import os
import re
import selectors
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from modelrunner.execution.carriage_returns import OverwrittenLines
from modelrunner.execution.progress_bars import BarReports, read_bar

log = logging.getLogger(__name__)

PROGRESS = re.compile(rb"^::progress::\s+([-+0-9.eE]+)\s*(.*?)\s*$")
_LINE_ENDS = re.compile(rb"\r\n?|\n")  # a progress bar's updates end with \r
_BAR_MARKS = (b"%|", b" [")  # in every bar read_bar reads (tqdm's, Keras')

OnProgress = Callable[[float, str], None]

_CHUNK = 65536
_LONGEST_PROGRESS_LINE = 65536  # a longer line is logged whole but read as no progress


@dataclass
class _Followed:
    log: IO[bytes]
    on_progress: OnProgress
    bars: BarReports | None  # None: the model's bars are not read as progress
    done: threading.Event = field(default_factory=threading.Event)
    lines: OverwrittenLines = field(default_factory=OverwrittenLines)
    partial: bytes = b""  # the start of a line whose end has not come yet
    overlong: bool = False  # the line under way is too long to be progress: skip to its end
    explicit: bool = False  # a ::progress:: line came: from now on, only they are progress


class OutputFollower:
    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # A byte on this pipe makes the thread look at newly registered pipes at once.
        self._nudge_read, self._nudge_write = os.pipe()
        os.set_blocking(self._nudge_read, False)
        self._selector.register(self._nudge_read, selectors.EVENT_READ, None)

    def follow(self, output_fd: int, log: IO[bytes], on_progress: OnProgress, *, bars: bool = True) -> threading.Event:
        """Copy what arrives on ``output_fd`` to ``log`` until the writers close it, calling
        ``on_progress`` for each progress line, and with ``bars`` for the progress bars printed
        until the first progress line (at most once a second, and at each bar's end); the event is
        set once all of it is in the log (``output_fd`` is closed then)."""
        os.set_blocking(output_fd, False)
        followed = _Followed(log, on_progress, BarReports(on_progress) if bars else None)
        with self._lock:
            self._selector.register(output_fd, selectors.EVENT_READ, followed)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="attempt-output", daemon=True)
                self._thread.start()
        os.write(self._nudge_write, b"x")
        return followed.done

    def _run(self) -> None:
        while True:
            for key, _ in self._selector.select():
                if key.data is None:
                    _drain(self._nudge_read)
                    continue
                try:
                    self._read(key.fd, key.data)
                except Exception:  # one attempt's trouble must not stop the others' logs
                    log.exception("following the output of an attempt failed")
                    self._end(key.fd, key.data)

    def _read(self, fd: int, followed: _Followed) -> None:
        try:
            chunk = os.read(fd, _CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""  # an error on the pipe ends it as its close would
        if chunk:
            logged = followed.lines.feed(chunk)
            if logged:
                followed.log.write(logged)
                followed.log.flush()
            self._progress(followed, chunk)
            return
        followed.log.write(followed.lines.finish())
        if followed.partial and not followed.overlong:
            _read_progress(followed.partial, followed)
        if followed.bars is not None and not followed.explicit:
            followed.bars.flush()
        self._end(fd, followed)

    def _end(self, fd: int, followed: _Followed) -> None:
        with self._lock:
            self._selector.unregister(fd)
        os.close(fd)
        followed.done.set()

    @staticmethod
    def _progress(followed: _Followed, chunk: bytes) -> None:
        data = followed.partial + chunk
        reading_bars = followed.bars is not None and not followed.explicit
        if b"::progress::" in data or (reading_bars and any(mark in data for mark in _BAR_MARKS)):
            lines = _LINE_ENDS.split(data) if b"\r" in data else data.split(b"\n")
            followed.partial = lines.pop()
        else:
            # Most chunks hold no progress: only their unfinished line is kept, none is looked at.
            last_end = max(data.rfind(b"\n"), data.rfind(b"\r"))
            lines = [b""] if last_end >= 0 else []  # a line ended: an overlong one, perhaps
            followed.partial = data[last_end + 1 :]
        if followed.overlong and lines:
            lines.pop(0)  # the end of the overlong line
            followed.overlong = False
        if followed.overlong or len(followed.partial) > _LONGEST_PROGRESS_LINE:
            followed.partial, followed.overlong = b"", True
        for line in lines:
            _read_progress(line, followed)
        if followed.partial and reading_bars and not followed.explicit:
            # tqdm writes "\r" and then the whole bar: the update under way is complete already.
            reading = read_bar(followed.partial)
            if reading is not None and followed.bars is not None:
                followed.bars.saw(*reading)


def _read_progress(line: bytes, followed: _Followed) -> None:
    match = PROGRESS.match(line)
    if match:
        try:
            fraction = min(max(float(match.group(1)), 0.0), 1.0)
        except ValueError:
            return
        if not followed.explicit and followed.bars is not None:
            followed.bars.drop()
        followed.explicit = True
        followed.on_progress(fraction, match.group(2).decode("utf-8", "replace"))
    elif followed.bars is not None and not followed.explicit:
        reading = read_bar(line)
        if reading is not None:
            followed.bars.saw(*reading)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


_FOLLOWER: OutputFollower | None = None
_FOLLOWER_LOCK = threading.Lock()


def output_follower() -> OutputFollower:
    """This process's follower, started with the first attempt it follows."""
    global _FOLLOWER
    with _FOLLOWER_LOCK:
        if _FOLLOWER is None:
            _FOLLOWER = OutputFollower()
        return _FOLLOWER
