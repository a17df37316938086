"""Sending the outbox: claim a due delivery, send it, record the attempt, retry with backoff.

What callers can rely on:

- a delivery is claimed by compare-and-set (its status and attempt count), which also sets a
  lease (``next_attempt_at``) and the claimer's runner id: two servers never send it at once.
  Every change of its status is a move of ``delivery_transition.py``, checked against its table;
- every attempt is recorded (start, duration, HTTP status or SMTP error) with the delivery's new
  status in one transaction. A failed attempt is retried after ``backoff_seconds``, doubling
  each time up to an hour (``notifications.webhooks`` / ``notifications.email``); after the last
  attempt it is ``failed``;
- a claim whose holder died (a process gone on this host, or a lease run out) is taken over; the
  lost attempt is recorded as interrupted. It may have reached its receiver: a crash after
  sending but before recording sends it again. Receivers can tell: the mail's ``Message-ID`` and
  the webhook's ``X-Modelrunner-Delivery`` carry the delivery's idempotency key, the same on every
  attempt. Delivery is therefore at least once, and exactly once for receivers that drop a key
  they have seen;
- a delivery whose subscription was removed is ``cancelled`` instead of sent;
- a webhook's secret is decrypted only to sign the attempt; a secret the keys cannot read fails
  the attempt with a message naming the key file.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy.orm import Session

from modelrunner.auth.secret_keys import SecretKeyError, SecretKeys
from modelrunner.clock import utcnow
from modelrunner.data.source import public_url
from modelrunner.engine.runner_identity import is_dead_runner
from modelrunner.notify import email, messages, webhooks
from modelrunner.notify.delivery_transition import move_delivery
from modelrunner.notify.sent import Sent, redacted
from modelrunner.notify.states import Channel, DeliveryKind, DeliveryStatus
from modelrunner.process_log import about_attempt
from modelrunner.spec.notify_spec import EMAIL_ATTEMPTS, EMAIL_BACKOFF_SECONDS, EMAIL_TIMEOUT, NotificationsSpec
from modelrunner.spec.workspace import Workspace
from modelrunner.store import notify_queries
from modelrunner.store.database import Database
from modelrunner.store.tables import DeliveryAttemptRow, DeliveryRow

log = logging.getLogger("modelrunner.notify")

_LEASE_MARGIN = 10.0  # seconds a claim outlives the longest conversation it may hold
_STALE_BATCH = 100
_MAX_DELAY_SECONDS = 3600.0


@dataclass(frozen=True)
class Retry:
    """How a channel is retried: attempts in all, the first delay (doubling), one try's timeout."""

    attempts: int
    backoff_seconds: float
    timeout: float

    def delay(self, attempt: int) -> dt.timedelta:
        """The wait after failed attempt number ``attempt`` (1-based): ``backoff_seconds``,
        doubling, at most an hour (or ``backoff_seconds`` if that is longer)."""
        doubled = self.backoff_seconds * 2 ** min(attempt - 1, 30)
        return dt.timedelta(seconds=min(doubled, max(_MAX_DELAY_SECONDS, self.backoff_seconds)))

    @property
    def lease(self) -> dt.timedelta:
        return dt.timedelta(seconds=2 * self.timeout + _LEASE_MARGIN)


def retry_of(spec: NotificationsSpec, channel: str) -> Retry:
    """The retry rules of ``channel`` (digest mails go as e-mail)."""
    if channel == Channel.WEBHOOK:
        hooks = spec.webhooks
        return Retry(hooks.attempts, hooks.backoff_seconds, hooks.timeout_seconds)
    if spec.email is not None:
        return Retry(spec.email.attempts, spec.email.backoff_seconds, spec.email.timeout)
    # Mail created while notifications.email was there, tried after it was removed: retried as
    # e-mail is by default, each attempt saying what is missing.
    return Retry(EMAIL_ATTEMPTS, EMAIL_BACKOFF_SECONDS, EMAIL_TIMEOUT)


@dataclass(frozen=True)
class _Claim:
    delivery_id: int
    attempt: int  # the number of the attempt this claim makes


class Deliverer:
    """Sends due deliveries on a few threads of its own; ``deliver_due()`` starts what is due and
    returns at once, ``close()`` waits for the sends in flight."""

    def __init__(
        self,
        database: Database,
        workspace: Workspace,
        runner_id: str,
        keys: SecretKeys,
        *,
        workers: int = 4,
        environ: Mapping[str, str] | None = None,
        on_sent: Callable[[], None] | None = None,
    ) -> None:
        self._database = database
        self._workspace = workspace
        self._runner_id = runner_id
        self._keys = keys
        self._workers = workers
        self._environ = environ if environ is not None else os.environ
        self._on_sent = on_sent  # a sending thread is free again: more may be claimed at once
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="notify-send")
        self._in_flight: dict[Future[None], int] = {}  # each send and its delivery id
        self._lock = threading.Lock()

    def deliver_due(self) -> int:
        """Claim the deliveries that are due (up to the free sending threads) and start sending
        them; how many were claimed."""
        with self._lock:
            self._in_flight = {future: id_ for future, id_ in self._in_flight.items() if not future.done()}
            free = self._workers - len(self._in_flight)
            sending = set(self._in_flight.values())
        if free <= 0:
            return 0
        spec = self._workspace.spec().notifications
        claims = self._claim(spec, free, sending)
        with self._lock:
            for claim in claims:
                self._in_flight[self._executor.submit(self._send, claim, spec)] = claim.delivery_id
        return len(claims)

    def wait(self, timeout: float) -> bool:
        """Wait for the sends in flight; whether they all ended within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            pending = list(self._in_flight)
        for future in pending:
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return False
        return True

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    # --- claiming -----------------------------------------------------------------------------

    def _claim(self, spec: NotificationsSpec, limit: int, sending: set[int]) -> list[_Claim]:
        """Claim up to ``limit`` due deliveries, never one this process is still sending (a send
        slower than its lease is left to finish rather than sent twice from here)."""
        now = utcnow()
        with self._database.read() as session:
            due = notify_queries.due_deliveries(
                session, [DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value], now, limit
            )
            # A sender that died on this host need not wait for its lease to run out.
            stale = [
                row
                for row in notify_queries.deliveries_in(session, DeliveryStatus.SENDING.value, _STALE_BATCH)
                if row.claimed_by not in (None, self._runner_id) and is_dead_runner(row.claimed_by or "")
            ]
        candidates = {row.id: row for row in [*due, *stale] if row.id not in sending}
        claims: list[_Claim] = []
        for row in candidates.values():
            if len(claims) >= limit:
                break
            claim = self._claim_one(row, retry_of(spec, row.channel), now)
            if claim is not None:
                claims.append(claim)
        return claims

    def _claim_one(self, row: DeliveryRow, retry: Retry, now: dt.datetime) -> _Claim | None:
        source = DeliveryStatus(row.status)
        # The attempt count tells this claim from a later one of the same delivery.
        expected = {"attempts": row.attempts}
        interrupted = source == DeliveryStatus.SENDING
        with self._database.write() as session:
            if interrupted and row.attempts >= retry.attempts:
                error = _interrupted(row.claimed_by) + "; no attempts left"
                if move_delivery(
                    session,
                    row.id,
                    source,
                    DeliveryStatus.FAILED,
                    expected=expected,
                    next_attempt_at=None,
                    last_error=error,
                    updated_at=now,
                ):
                    _record(session, row, row.attempts, row.updated_at, 0.0, Sent(False, None, error))
                return None
            if not move_delivery(
                session,
                row.id,
                source,
                DeliveryStatus.SENDING,
                expected=expected,
                attempts=row.attempts + 1,
                claimed_by=self._runner_id,
                next_attempt_at=now + retry.lease,
                updated_at=now,
            ):
                return None  # another server claimed it first
            if interrupted:
                _record(
                    session, row, row.attempts, row.updated_at, 0.0, Sent(False, None, _interrupted(row.claimed_by))
                )
        return _Claim(row.id, row.attempts + 1)

    # --- sending ------------------------------------------------------------------------------

    def _send(self, claim: _Claim, spec: NotificationsSpec) -> None:
        try:
            self._attempt(claim, spec)
        except Exception:  # a sending thread must outlive any one delivery; the lease retries it
            log.exception("delivery %s: attempt %s could not be recorded", claim.delivery_id, claim.attempt)
        finally:
            if self._on_sent is not None:
                self._on_sent()

    def _attempt(self, claim: _Claim, spec: NotificationsSpec) -> None:
        with self._database.read() as session:
            row = notify_queries.delivery(session, claim.delivery_id)
            subscription = (
                notify_queries.subscription(session, row.subscription_id) if row and row.subscription_id else None
            )
        if row is None:
            return
        if subscription is not None and subscription.removed_at is not None:
            self._finish(row, claim, None, DeliveryStatus.CANCELLED, next_attempt_at=None)
            return
        retry = retry_of(spec, row.channel)
        started, clock = utcnow(), time.monotonic()
        sealed = subscription.secret if subscription is not None else None
        secret = None
        try:
            secret = self._keys.decrypt(sealed) if sealed is not None and row.channel == Channel.WEBHOOK else None
            sent = self._deliver(spec, row, secret)
        except SecretKeyError as exc:
            sent = Sent(False, None, exc.message)
        except Exception as exc:  # a bug must not leave the delivery claimed until its lease ends
            sent = Sent(False, None, redacted(f"unexpected {type(exc).__name__}: {exc}", [secret]))
        duration = time.monotonic() - clock
        now = utcnow()
        changes: dict[str, object]
        if sent.ok:
            to, changes = DeliveryStatus.DELIVERED, {"next_attempt_at": None, "delivered_at": now}
        elif claim.attempt >= retry.attempts:
            to, changes = DeliveryStatus.FAILED, {"next_attempt_at": None}
        else:
            to, changes = DeliveryStatus.PENDING, {"next_attempt_at": now + retry.delay(claim.attempt)}
        self._finish(row, claim, (started, duration, sent), to, last_error=sent.error, **changes)
        if not sent.ok:
            with about_attempt(run_id=row.run_id):  # a digest is about no one run: None
                log.warning(
                    "delivery %s (%s to %s) attempt %s of %s failed: %s",
                    row.id,
                    row.channel,
                    _shown_target(row),
                    claim.attempt,
                    retry.attempts,
                    sent.error,
                )

    def _finish(
        self,
        row: DeliveryRow,
        claim: _Claim,
        attempt: tuple[dt.datetime, float, Sent] | None,
        to: DeliveryStatus,
        **values: object,
    ) -> None:
        """Release this claim, moving the delivery to ``to``, unless another sender took it over."""
        expected = {"attempts": claim.attempt, "claimed_by": self._runner_id}
        with self._database.write() as session:
            if attempt is not None:  # it happened, whoever holds the delivery now
                started, duration, sent = attempt
                _record(session, row, claim.attempt, started, duration, sent)
            if not move_delivery(
                session,
                row.id,
                DeliveryStatus.SENDING,
                to,
                expected=expected,
                claimed_by=None,
                updated_at=utcnow(),
                **values,
            ):
                log.warning("delivery %s was taken over while attempt %s was sent", row.id, claim.attempt)

    def _deliver(self, spec: NotificationsSpec, row: DeliveryRow, secret: str | None) -> Sent:
        if row.channel == Channel.WEBHOOK:
            if secret is None:
                return Sent(False, None, "the subscription has no signing secret (it was removed)")
            timeout = spec.webhooks.timeout_seconds
            return webhooks.post(row.target, secret, row.key, row.payload, timeout)
        if spec.email is None:
            return Sent(False, None, "this server sends no e-mail: add notifications.email to modelrunner.yaml")
        if not row.target:
            return Sent(False, None, "the user has no e-mail address; a site admin can set one")
        payload = row.payload
        if row.kind == DeliveryKind.DIGEST:
            subject, text = messages.digest_subject(payload), messages.digest_text(payload)
            html = messages.digest_html(payload)
        else:
            subject, text, html = messages.run_subject(payload), messages.run_text(payload), messages.run_html(payload)
        mail = email.message(spec.email, row.target, subject, text, row.key, html)
        return email.send(spec.email, mail, self._environ)


def _record(session: Session, row: DeliveryRow, number: int, started: dt.datetime, duration: float, sent: Sent) -> None:
    notify_queries.add_attempt(
        session,
        DeliveryAttemptRow(
            delivery_id=row.id,
            number=number,
            started_at=started,
            duration_seconds=duration,
            ok=sent.ok,
            http_status=sent.http_status,
            error=sent.error,
        ),
    )


def _interrupted(claimed_by: str | None) -> str:
    return (
        f"interrupted: the server sending it ({claimed_by or 'unknown'}) stopped before recording the outcome; "
        "it may have been delivered"
    )


def _shown_target(row: DeliveryRow) -> str:
    return public_url(row.target) if row.channel == Channel.WEBHOOK else row.target
