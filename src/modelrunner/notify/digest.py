"""Digests: at each tick of ``notifications.digest`` (a cron expression in a time zone), one mail
per user summarising what their digest subscriptions held since their last digest.

What callers can rely on:

- a tick fires once, whatever the number of servers or restarts: its state (a row of
  ``schedule_states`` named ``notify:digest``) moves by compare-and-set in the same transaction
  that creates the digest mails and moves the held items into them, as schedules fire
  (``engine/scheduler.py``, whose DST rules apply too);
- the first tick is the next one after the server first sees the digest; after downtime the
  newest missed tick fires once; an edited cron or time zone starts again from now;
- a digest groups what is new since the user's last digest by the subscription that held it,
  each run with its own summary (the model's news, notify/summaries.py);
- a user with nothing held gets no mail; a disabled user's items stay held until they are
  enabled again;
- the digest mail is a delivery like any other (key ``digest-u<user>-<tick>``), sent and retried
  as e-mail.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable

from sqlalchemy.orm import Session

from modelrunner.clock import utcnow
from modelrunner.engine.cron_ticks import CronTicks
from modelrunner.errors import AlreadyExists, ChangedMeanwhile
from modelrunner.notify import messages
from modelrunner.notify.delivery_transition import move_deliveries
from modelrunner.notify.states import Channel, DeliveryKind, DeliveryStatus
from modelrunner.spec.notify_spec import DigestSpec
from modelrunner.spec.workspace import Workspace
from modelrunner.store import account_queries, automation_queries, notify_queries
from modelrunner.store.database import Database
from modelrunner.store.tables import DeliveryRow, ScheduleStateRow

STATE = "notify:digest"  # a colon: no schedule (named <model>/<schedule>) can take this name
_NEVER = dt.datetime(9999, 12, 31, tzinfo=dt.UTC)


def digest_key(user_id: int, tick_at: dt.datetime) -> str:
    return f"digest-u{user_id}-{tick_at.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}"


class Digest:
    """Fires the digest schedule; ``tick()`` is called by the notifier every tick."""

    def __init__(self, database: Database, workspace: Workspace, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self._database = database
        self._workspace = workspace
        self._clock = clock

    def tick(self) -> int:
        """Fire the digest if its tick has come; the number of digest mails created."""
        spec = self._workspace.spec().notifications.digest
        if spec is None:
            return 0
        now = self._clock()
        ticks = CronTicks(spec.cron, spec.timezone)
        signature = _signature(spec)
        with self._database.read() as session:
            state = automation_queries.schedule_states(session).get(STATE)
        if state is None:
            self._start(signature, ticks.next_after(now) or _NEVER, now)
            return 0
        if state.cron != signature:  # edited: start afresh from now
            with self._database.write() as session:
                values = {"cron": signature, "next_fire_at": ticks.next_after(now) or _NEVER, "updated_at": now}
                automation_queries.resign_schedule_if(session, STATE, signature=state.cron, values=values)
            return 0
        if now < state.next_fire_at:
            return 0
        tick_at = max(ticks.latest_until(now) or state.next_fire_at, state.next_fire_at)
        values = {"next_fire_at": ticks.next_after(now) or _NEVER, "last_fired_at": tick_at, "updated_at": now}
        try:
            with self._database.write() as session:
                automation_queries.move_schedule(
                    session, STATE, next_fire_at=state.next_fire_at, signature=state.cron, values=values
                )
                return _compose(session, tick_at)
        except ChangedMeanwhile:
            return 0  # another server fired this tick first

    def next_fire_at(self) -> dt.datetime | None:
        """When the next digest goes (None without a digest schedule, or before its first tick
        was computed)."""
        spec = self._workspace.spec().notifications.digest
        if spec is None:
            return None
        with self._database.read() as session:
            state = automation_queries.schedule_states(session).get(STATE)
        if state is None or state.cron != _signature(spec) or state.next_fire_at == _NEVER:
            return None
        return state.next_fire_at

    def _start(self, signature: str, next_at: dt.datetime, now: dt.datetime) -> None:
        row = ScheduleStateRow(name=STATE, cron=signature, next_fire_at=next_at, last_fired_at=None, updated_at=now)
        try:
            with self._database.write() as session:
                automation_queries.add_schedule_state(session, row)
        except AlreadyExists:
            pass  # another server started it first


def _compose(session: Session, tick_at: dt.datetime) -> int:
    """One digest mail per user with held items, the items moved into it; how many mails. The
    mails are due at once (the wall clock, whatever clock decided the tick)."""
    now = utcnow()
    held: dict[int, list[DeliveryRow]] = defaultdict(list)
    for row in notify_queries.held_deliveries(session, DeliveryStatus.HELD.value):
        held[row.user_id].append(row)
    users = account_queries.users_by_id(session, list(held))
    subscribed = notify_queries.subscriptions_by_id(
        session, {row.subscription_id for rows in held.values() for row in rows if row.subscription_id is not None}
    )
    described = {row.id: messages.subscription_payload(row) for row in subscribed.values()}
    # An item its outbox composed while its subscription was being removed: not digested.
    removed = {
        row.id
        for rows in held.values()
        for row in rows
        if row.subscription_id in subscribed and subscribed[row.subscription_id].removed_at is not None
    }
    if removed:
        move_deliveries(
            session, removed, DeliveryStatus.HELD, DeliveryStatus.CANCELLED, next_attempt_at=None, updated_at=now
        )
    created = 0
    for user_id, rows in held.items():
        items = [row for row in rows if row.id not in removed]
        user = users.get(user_id)
        if not items or user is None or user.disabled:
            continue
        key = digest_key(user_id, tick_at)
        payload = messages.digest_payload(
            key=key,
            user=user.name,
            tick_at=tick_at,
            items=[item.payload for item in items],
            total=len(items),
            subscriptions=described,
        )
        mail = DeliveryRow(
            key=key,
            kind=DeliveryKind.DIGEST.value,
            subscription_id=None,
            user_id=user_id,
            channel=Channel.EMAIL.value,
            target=user.email or "",
            event_id=None,
            run_id=None,
            event_type="digest",
            payload=payload,
            status=DeliveryStatus.PENDING.value,
            attempts=0,
            next_attempt_at=now,
            claimed_by=None,
            last_error=None,
            digest_id=None,
            created_at=now,
            updated_at=now,
            delivered_at=None,
        )
        notify_queries.add_deliveries(session, [mail])
        move_deliveries(
            session,
            [item.id for item in items],
            DeliveryStatus.HELD,
            DeliveryStatus.DIGESTED,
            digest_id=mail.id,
            updated_at=now,
        )
        created += 1
    return created


def _signature(spec: DigestSpec) -> str:
    return f"{spec.cron} {spec.timezone}"
