"""The notifier: the thread of ``modelrunner serve`` that turns events into deliveries (the
outbox), fires the digest schedule and sends what is due. It holds no state of its own: every
tick reads where things stand from the database, so a restarted server (or a second one) carries
on where the last one stopped."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping

from modelrunner.artifacts.store import ArtifactStore
from modelrunner.auth.secret_keys import SecretKeys
from modelrunner.clock import utcnow
from modelrunner.errors import ModelrunnerError
from modelrunner.notify.deliveries import Deliverer
from modelrunner.notify.digest import Digest
from modelrunner.notify.outbox import Outbox
from modelrunner.service_loop import ServiceLoop
from modelrunner.spec.workspace import Workspace
from modelrunner.store import notify_queries
from modelrunner.store.database import Database

log = logging.getLogger("modelrunner.notify")

_STOP_WAIT_SECONDS = 30.0


class Notifier:
    """``wake()`` makes it act at once; ``runs_ended()`` does too while any subscription exists.
    It also acts every ``tick_seconds`` (digests, retries, and changes made by other servers)."""

    def __init__(
        self,
        database: Database,
        workspace: Workspace,
        keys: SecretKeys,
        *,
        artifacts: ArtifactStore,
        runner_id: str,
        default_base_url: str,
        tick_seconds: float,
        clock: Callable[[], dt.datetime] = utcnow,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.outbox = Outbox(database, workspace, artifacts, default_base_url=default_base_url)
        self.digest = Digest(database, workspace, clock=clock)
        self.deliverer = Deliverer(database, workspace, runner_id, keys, environ=environ, on_sent=self.wake)
        self._database = database
        self._loop = ServiceLoop("notifier", self._round, interval=tick_seconds, log=log)
        # Whether the last round found a subscription: while there is none, runs ending wake
        # nothing (their events are collected at the next interval; a subscription made since
        # then is not notified of events older than itself anyway).
        self._anyone_subscribed = True
        self._trouble: dict[str, str] = {}  # the last warning of each step, said once until it changes

    def prepare(self) -> None:
        """Place the outbox's cursor if no server did yet: events from now on are notified, also
        those of a server that sends nothing itself (``notify: false``) for the next one to send."""
        self.outbox.start()

    def start(self) -> None:
        self.prepare()
        self._loop.start()

    def stop(self) -> None:
        """Stop ticking and wait (a bounded time) for the sends in flight to be recorded."""
        self._loop.stop()
        if not self.deliverer.wait(_STOP_WAIT_SECONDS):
            log.warning("deliveries still being sent at shutdown; their claims expire and another server retries")
        self.deliverer.close()

    def wake(self) -> None:
        self._loop.wake()

    def runs_ended(self) -> None:
        """Runs may have ended: their subscribers hear at once."""
        if self._anyone_subscribed:
            self._loop.wake()

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

    def _round(self) -> None:
        try:
            with self._database.read() as session:
                self._anyone_subscribed = notify_queries.any_active_subscription(session)
        except ModelrunnerError:
            self._anyone_subscribed = True  # the round below says what is wrong
        self.tick()
