"""One thread of this process follows what every running attempt prints: a selector over all their
output pipes copies each chunk into the attempt's log as it comes and picks out progress lines.

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

log = logging.getLogger(__name__)

PROGRESS = re.compile(rb"^::progress::\s+([-+0-9.eE]+)\s*(.*?)\s*$")

OnProgress = Callable[[float, str], None]

_CHUNK = 65536
_LONGEST_PROGRESS_LINE = 65536  # a longer line is logged whole but read as no progress


@dataclass
class _Followed:
    log: IO[bytes]
    on_progress: OnProgress
    done: threading.Event = field(default_factory=threading.Event)
    partial: bytes = b""  # the start of a line whose end has not come yet
    overlong: bool = False  # the line under way is too long to be progress: skip to its end


class OutputFollower:
    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # A byte on this pipe makes the thread look at newly registered pipes at once.
        self._nudge_read, self._nudge_write = os.pipe()
        os.set_blocking(self._nudge_read, False)
        self._selector.register(self._nudge_read, selectors.EVENT_READ, None)

    def follow(self, output_fd: int, log: IO[bytes], on_progress: OnProgress) -> threading.Event:
        """Copy what arrives on ``output_fd`` to ``log`` until the writers close it, calling
        ``on_progress`` for each progress line; the event is set once all of it is in the log
        (``output_fd`` is closed then)."""
        os.set_blocking(output_fd, False)
        followed = _Followed(log, on_progress)
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
            followed.log.write(chunk)
            followed.log.flush()
            self._progress(followed, chunk)
            return
        if followed.partial and not followed.overlong:
            _report_progress(followed.partial, followed.on_progress)
        self._end(fd, followed)

    def _end(self, fd: int, followed: _Followed) -> None:
        with self._lock:
            self._selector.unregister(fd)
        os.close(fd)
        followed.done.set()

    @staticmethod
    def _progress(followed: _Followed, chunk: bytes) -> None:
        lines = (followed.partial + chunk).split(b"\n")
        followed.partial = lines.pop()
        if followed.overlong and lines:
            lines.pop(0)  # the end of the overlong line
            followed.overlong = False
        if followed.overlong or len(followed.partial) > _LONGEST_PROGRESS_LINE:
            followed.partial, followed.overlong = b"", True
        for line in lines:
            _report_progress(line, followed.on_progress)


def _report_progress(line: bytes, on_progress: OnProgress) -> None:
    match = PROGRESS.match(line.rstrip(b"\r"))
    if match:
        try:
            fraction = min(max(float(match.group(1)), 0.0), 1.0)
        except ValueError:
            return
        on_progress(fraction, match.group(2).decode("utf-8", "replace"))


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
