"""The outbox: run events become deliveries, exactly once per subscription and event.

What callers can rely on:

- the outbox reads ``run.status`` events after its cursor (a row of ``trigger_cursors`` named
  ``notify:outbox``, moved by compare-and-set as triggers move theirs) and inserts the
  deliveries of a batch of events in the same transaction that moves the cursor past them. Two
  servers never both create them (the second loses the compare-and-set and rolls back), a crash
  before the commit creates them after the restart, and ``deliveries.key``
  (``s<subscription>-e<event>``) is unique as a last guard;
- on PostgreSQL events are read once they are 2 seconds old (ids are taken at insert, not at
  commit; see ``engine/triggers.py``), so a notification is created about 2 s after its event;
- the events notified are runs that *ended*: succeeded, failed, timed_out, cancelled. A cache hit
  computes nothing and notifies nobody (its result was announced when it was computed);
- a model subscription hears of the model's top-level runs (a pipeline's run, not its step
  runs); a run subscription hears of that one run;
- ``failures`` means failed or timed_out (a cancelled run was asked to stop);
  ``results_changed`` means a success whose outputs (path -> sha256) differ from those of the
  previous computed success of the same model, step and fan-out item with the same parameters,
  or a first result (runs further back than ``_CHANGE_LOOKBACK`` successes count as none);
- a subscription hears only of events that happened after it was created, and only while its
  user exists, is not disabled and may ``view`` the model (access is checked at each event, so
  leaving a group ends the notifications);
- a delivery's content (``payload``) is fixed here: the same bytes on every retry.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from sqlalchemy.orm import Session

from modelrunner.auth import accounts
from modelrunner.auth.access import Access
from modelrunner.clock import utcnow
from modelrunner.engine.states import RunStatus
from modelrunner.errors import AlreadyExists, ChangedMeanwhile
from modelrunner.notify import messages
from modelrunner.notify.states import NOTIFIED_RUN_STATES, Channel, DeliveryKind, DeliveryStatus, NotifyOn, wants
from modelrunner.spec.access_spec import Level
from modelrunner.spec.workspace import Workspace, WorkspaceSpec
from modelrunner.store import account_queries, automation_queries, notify_queries, queries
from modelrunner.store.automation_queries import Event
from modelrunner.store.database import Database
from modelrunner.store.tables import DeliveryRow, RunRow, SubscriptionRow, TriggerCursorRow, UserRow

log = logging.getLogger("modelrunner.notify")

CURSOR = "notify:outbox"  # a colon: no trigger (named <model>/<trigger>) can take this cursor's name
RUN_STATUS = "run.status"
_BATCH = 200
_SETTLE_SECONDS = 2.0  # as triggers wait on PostgreSQL; SQLite commits in id order
_CHANGE_LOOKBACK = 1000
_LOOKBACK_BATCH = 100
_NOTIFIED = {status.value for status in NOTIFIED_RUN_STATES}


def delivery_key(subscription_id: int, event_id: int) -> str:
    """The idempotency key of the notification of one event to one subscription."""
    return f"s{subscription_id}-e{event_id}"


class Outbox:
    """Turns events into deliveries; ``collect()`` is called by the notifier every tick."""

    def __init__(
        self,
        database: Database,
        workspace: Workspace,
        *,
        default_base_url: str,
        settle_seconds: float | None = None,
    ) -> None:
        self._database = database
        self._workspace = workspace
        self._default_base_url = default_base_url.rstrip("/")
        settle = settle_seconds if settle_seconds is not None else (0.0 if database.is_sqlite else _SETTLE_SECONDS)
        self._settle = dt.timedelta(seconds=settle)

    def collect(self) -> int:
        """Create the deliveries of the events after the cursor that have settled; how many."""
        with self._database.read() as session:
            cursor = automation_queries.trigger_cursors(session).get(CURSOR)
        if cursor is None:
            self.start()
            return 0
        position, created = cursor.last_event_id, 0
        while True:
            with self._database.read() as session:
                events = automation_queries.events_after(session, RUN_STATUS, position, _BATCH)
            settled_before = utcnow() - self._settle
            ready = []
            for event in events:
                if event.created_at > settled_before:
                    break  # this event and those after it wait for a later tick
                ready.append(event)
            if not ready:
                return created
            spec = self._workspace.spec()  # SpecError: the cursor waits until the file is fixed
            try:
                with self._database.write() as session:
                    automation_queries.move_cursor(session, CURSOR, from_id=position, to_id=ready[-1].id, at=utcnow())
                    rows = self._deliveries(session, ready, spec)
                    notify_queries.add_deliveries(session, rows)
            except ChangedMeanwhile:
                return created  # another server is ahead; the next tick reads again
            created += len(rows)
            position = ready[-1].id
            if len(ready) < len(events) or len(events) < _BATCH:
                return created

    def start(self) -> None:
        """Put the cursor after the newest event if there is none yet (the first server with
        notifications: history notifies nobody). Idempotent; the notifier calls it before the
        server takes requests, so no subscription can be older than the cursor."""
        try:
            with self._database.write() as session:
                newest = automation_queries.newest_event_id(session, RUN_STATUS)
                automation_queries.add_trigger_cursor(
                    session, TriggerCursorRow(name=CURSOR, last_event_id=newest, updated_at=utcnow())
                )
        except AlreadyExists:
            pass  # another server started it first

    def _deliveries(self, session: Session, events: Sequence[Event], spec: WorkspaceSpec) -> list[DeliveryRow]:
        ended = [
            event
            for event in events
            if event.run_id is not None and event.data.get("to") in _NOTIFIED and not event.data.get("cache_hit")
        ]
        if not ended or not notify_queries.any_active_subscription(session):
            return []  # nobody to notify: the runs need not be read
        runs = notify_queries.runs_by_id(session, {event.run_id for event in ended if event.run_id is not None})
        models = {run.model_name for run in runs.values() if run.parent_id is None}
        subscriptions = notify_queries.subscriptions_for(session, models, list(runs))
        if not subscriptions:
            return []
        audience = _Audience(session, spec, {s.user_id for s in subscriptions})
        base_url = spec.notifications.base_url or self._default_base_url
        now = utcnow()
        rows = []
        for event in ended:
            run = runs.get(event.run_id or 0)
            if run is None:
                continue
            status = RunStatus(event.data["to"])
            changed: bool | None = None
            outputs = None
            for subscription in subscriptions:
                if not _covers(subscription, run) or subscription.created_at > event.created_at:
                    continue
                user = audience.user_who_may_view(subscription.user_id, run.model_name)
                if user is None:
                    continue
                if status == RunStatus.SUCCEEDED and changed is None:
                    changed = results_changed(session, run)
                if not wants(NotifyOn(subscription.notify_on), status, bool(changed)):
                    continue
                if outputs is None:
                    outputs = queries.outputs_of(session, run.id)
                key = delivery_key(subscription.id, event.id)
                payload = messages.run_payload(
                    key=key,
                    subscription_id=subscription.id,
                    event_id=event.id,
                    occurred_at=event.created_at,
                    status=status.value,
                    run=run,
                    outputs=outputs,
                    results_changed=changed,
                    base_url=base_url,
                )
                rows.append(_delivery(subscription, user, event, run, payload, key, now))
        return rows


def results_changed(session: Session, run: RunRow) -> bool:
    """Whether a succeeded run's outputs differ from those of the previous computed success of
    the same model, step and item with the same parameters (True when there is none)."""
    mine = notify_queries.output_digests(session, run.id)
    before, looked = run.id, 0
    while looked < _CHANGE_LOOKBACK:
        earlier = notify_queries.earlier_computed_successes(session, run, before, _LOOKBACK_BATCH)
        for other in earlier:
            if other.params == run.params:
                return notify_queries.output_digests(session, other.id) != mine
        if len(earlier) < _LOOKBACK_BATCH:
            return True
        before, looked = earlier[-1].id, looked + len(earlier)
    return True


def _covers(subscription: SubscriptionRow, run: RunRow) -> bool:
    if subscription.run_id is not None:
        return subscription.run_id == run.id
    return subscription.model == run.model_name and run.parent_id is None


def _delivery(
    subscription: SubscriptionRow,
    user: UserRow,
    event: Event,
    run: RunRow,
    payload: dict[str, object],
    key: str,
    now: dt.datetime,
) -> DeliveryRow:
    channel = Channel(subscription.channel)
    held = channel == Channel.DIGEST
    target = {Channel.EMAIL: user.email or "", Channel.WEBHOOK: subscription.url or "", Channel.DIGEST: ""}[channel]
    return DeliveryRow(
        key=key,
        kind=DeliveryKind.EVENT.value,
        subscription_id=subscription.id,
        user_id=user.id,
        channel=channel.value,
        target=target,
        event_id=event.id,
        run_id=run.id,
        event_type=str(payload["event"]),
        payload=payload,
        status=(DeliveryStatus.HELD if held else DeliveryStatus.PENDING).value,
        attempts=0,
        next_attempt_at=None if held else now,
        claimed_by=None,
        last_error=None,
        digest_id=None,
        created_at=now,
        updated_at=now,
        delivered_at=None,
    )


class _Audience:
    """The subscribers of one batch: who exists, is enabled, and may view which model."""

    def __init__(self, session: Session, spec: WorkspaceSpec, user_ids: set[int]) -> None:
        self._users = account_queries.users_by_id(session, user_ids)
        self._access = {
            user_id: Access(accounts.principal_of(session, row), spec.access)
            for user_id, row in self._users.items()
            if not row.disabled
        }

    def user_who_may_view(self, user_id: int, model: str) -> UserRow | None:
        access = self._access.get(user_id)
        return self._users[user_id] if access is not None and access.may(model, Level.VIEW) else None
