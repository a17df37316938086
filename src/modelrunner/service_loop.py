"""The one shape of modelrunner's background loops (dispatcher, automation, notifier, dataset
poller): a thread that does one round of work when woken or when its interval has passed, and
outlives any failure of a round, retrying after a growing pause."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

_FIRST_BACKOFF_SECONDS = 0.5
_LAST_BACKOFF_SECONDS = 30.0


class ServiceLoop:
    """Runs ``round()`` in a thread of its own: at once after ``wake()``, otherwise after the
    seconds the previous round returned (``interval`` when it returned None).

    A round that raises is logged with its traceback; the next one comes after a pause that
    doubles with each failure in a row (from half a second up to 30 s, never longer than the
    interval would have been), so a store that is down is not hammered and one that comes back
    is used again soon."""

    def __init__(self, name: str, round: Callable[[], float | None], *, interval: float, log: logging.Logger) -> None:
        self.name = name
        self._round = round
        self._interval = interval
        self._log = log
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Do a round now (or right after the one under way)."""
        self._wake.set()

    def stop(self) -> None:
        """Let the round under way finish, then end the thread."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _run(self) -> None:
        backoff = 0.0
        while not self._stopping.is_set():
            try:
                pause = self._round()
            except Exception:  # the loop must outlive any single failure; a later round retries
                self._log.exception("%s: a round failed", self.name)
                backoff = min(max(backoff * 2, _FIRST_BACKOFF_SECONDS), _LAST_BACKOFF_SECONDS, self._interval)
                pause = backoff
            else:
                backoff = 0.0
            self._wake.wait(self._interval if pause is None else max(0.0, pause))
            self._wake.clear()
