"""The notifier: the thread of ``modelrunner serve`` that turns events into deliveries (the
outbox), fires the digest schedule and sends what is due. It holds no state of its own: every
tick reads where things stand from the database, so a restarted server (or a second one) carries
on where the last one stopped."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Mapping

from modelrunner.auth.secret_keys import SecretKeys
from modelrunner.clock import utcnow
from modelrunner.errors import ModelrunnerError
from modelrunner.notify.deliveries import Deliverer
from modelrunner.notify.digest import Digest
from modelrunner.notify.outbox import Outbox
from modelrunner.spec.workspace import Workspace
from modelrunner.store.database import Database

log = logging.getLogger("modelrunner.notify")

_STOP_WAIT_SECONDS = 30.0


class Notifier:
    """``wake()`` makes it act at once (a run ended); it also acts every ``tick_seconds``."""

    def __init__(
        self,
        database: Database,
        workspace: Workspace,
        keys: SecretKeys,
        *,
        runner_id: str,
        default_base_url: str,
        tick_seconds: float,
        clock: Callable[[], dt.datetime] = utcnow,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.outbox = Outbox(database, workspace, default_base_url=default_base_url)
        self.digest = Digest(database, workspace, clock=clock)
        self.deliverer = Deliverer(database, workspace, runner_id, keys, environ=environ, on_sent=self.wake)
        self._tick_seconds = tick_seconds
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._trouble: dict[str, str] = {}  # the last warning of each step, said once until it changes

    def prepare(self) -> None:
        """Place the outbox's cursor if no server did yet: events from now on are notified, also
        those of a server that sends nothing itself (``notify: false``) for the next one to send."""
        self.outbox.start()

    def start(self) -> None:
        self.prepare()
        self._thread = threading.Thread(target=self._loop, name="notifier", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop ticking and wait (a bounded time) for the sends in flight to be recorded."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        if not self.deliverer.wait(_STOP_WAIT_SECONDS):
            log.warning("deliveries still being sent at shutdown; their claims expire and another server retries")
        self.deliverer.close()

    def wake(self) -> None:
        self._wake.set()

    def tick(self) -> None:
        """One round: collect events, fire the digest, send what is due. One step's trouble
        (a broken modelrunner.yaml, an unavailable database) does not stop the others."""
        for name, step in (
            ("collecting events", self.outbox.collect),
            ("firing the digest", self.digest.tick),
            ("sending deliveries", self.deliverer.deliver_due),
        ):
            try:
                step()
            except ModelrunnerError as exc:
                if self._trouble.get(name) != exc.message:
                    log.warning("notifications: %s: %s", name, exc.message)
                self._trouble[name] = exc.message
            else:
                if self._trouble.pop(name, None) is not None:
                    log.info("notifications: %s works again", name)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._tick_seconds)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.tick()
            except Exception:  # the loop must outlive any single failure; the next tick retries
                log.exception("notifier tick failed")
