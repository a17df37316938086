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
  runs); one with ``step`` hears of that step's runs instead (each fan-out item's); a run
  subscription hears of that one run. One with ``params`` hears only of runs whose parameters
  hold those values (2 matches 2.0; true matches no 1);
- ``failures`` means failed or timed_out (a cancelled run was asked to stop);
  ``results_changed`` means a success whose outputs (path -> sha256) differ from those of the
  previous computed success of the same model, step and fan-out item with the same parameters,
  or a first result (runs further back than ``_CHANGE_LOOKBACK`` successes count as none). Only
  the outputs the model's ``notify.changes`` names count (all without it), and for a
  subscription with ``output`` only that output: a first result counts only if it wrote it;
- a run's summary (the output its model's ``notify.summary`` names, read as
  notify/summaries.py says) is read once per run and goes into every payload about it;
- a subscription hears only of events that happened after it was created, and only while its
  user exists, is not disabled and may ``view`` the model (access is checked at each event, so
  leaving a group ends the notifications);
- a delivery's content (``payload``) is fixed here: the same bytes on every retry.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy.orm import Session

from modelrunner.artifacts.store import ArtifactStore
from modelrunner.auth import accounts
from modelrunner.auth.access import Access
from modelrunner.clock import utcnow
from modelrunner.engine.states import RunStatus
from modelrunner.errors import AlreadyExists, ChangedMeanwhile
from modelrunner.notify import messages, summaries
from modelrunner.notify.states import NOTIFIED_RUN_STATES, Channel, DeliveryKind, DeliveryStatus, NotifyOn, wants
from modelrunner.spec.access_spec import Level
from modelrunner.spec.notify_spec import ModelNotifySpec
from modelrunner.spec.workspace import Workspace, WorkspaceSpec
from modelrunner.store import account_queries, automation_queries, notify_queries, queries
from modelrunner.store.automation_queries import Event
from modelrunner.store.database import Database
from modelrunner.store.tables import DeliveryRow, OutputRow, RunRow, SubscriptionRow, TriggerCursorRow, UserRow

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
        artifacts: ArtifactStore,
        *,
        default_base_url: str,
        settle_seconds: float | None = None,
    ) -> None:
        self._database = database
        self._workspace = workspace
        self._artifacts = artifacts
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
            # Composed before the write: reading the runs' summaries from the artifact store (an
            # object store, maybe) must not hold the store's write lock. What changes meanwhile
            # does not matter: a subscription made now is younger than these events, and one
            # removed now has its delivery cancelled when it is due.
            with self._database.read() as session:
                rows = self._deliveries(session, ready, spec)
            try:
                with self._database.write() as session:
                    automation_queries.move_cursor(session, CURSOR, from_id=position, to_id=ready[-1].id, at=utcnow())
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
        subscriptions = notify_queries.subscriptions_for(session, {run.model_name for run in runs.values()}, list(runs))
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
            news = _RunNews(session, self._artifacts, run, RunStatus(event.data["to"]))
            for subscription in subscriptions:
                if not covers(subscription, run) or subscription.created_at > event.created_at:
                    continue
                user = audience.user_who_may_view(subscription.user_id, run.model_name)
                if user is None:
                    continue
                changed = news.changed(subscription.output)
                if not wants(NotifyOn(subscription.notify_on), news.status, bool(changed)):
                    continue
                key = delivery_key(subscription.id, event.id)
                payload = messages.run_payload(
                    key=key,
                    subscription_id=subscription.id,
                    event_id=event.id,
                    occurred_at=event.created_at,
                    status=news.status.value,
                    run=run,
                    outputs=news.outputs,
                    results_changed=changed,
                    base_url=base_url,
                    summary=news.summary,
                )
                rows.append(_delivery(subscription, user, event, run, payload, key, now))
        return rows


class _RunNews:
    """What the notifications of one run that ended say, each part read once when first needed."""

    def __init__(self, session: Session, artifacts: ArtifactStore, run: RunRow, status: RunStatus) -> None:
        self._session = session
        self._artifacts = artifacts
        self.run = run
        self.status = status
        self._outputs: list[OutputRow] | None = None
        self._spec: ModelNotifySpec | None = None
        self._changed: dict[str | None, bool] = {}
        self._summary: dict[str, Any] | None = None
        self._summary_read = False

    @property
    def outputs(self) -> list[OutputRow]:
        if self._outputs is None:
            self._outputs = queries.outputs_of(self._session, self.run.id)
        return self._outputs

    @property
    def spec(self) -> ModelNotifySpec:
        if self._spec is None:
            self._spec = summaries.model_notify_spec(self._session, self.run)
        return self._spec

    def changed(self, output: str | None) -> bool | None:
        """Whether the run's results changed (None unless it succeeded): those ``notify.changes``
        names, or only ``output`` when a subscription watches one."""
        if self.status != RunStatus.SUCCEEDED:
            return None
        if output not in self._changed:
            run = self.run
            if output is not None:
                self._changed[output] = results_changed(
                    self._session, run, lambda path: output in summaries.output_names(run, path), require=True
                )
            elif self.spec.changes is not None:
                patterns = self.spec.changes
                self._changed[output] = results_changed(
                    self._session, run, lambda path: _matches(summaries.output_names(run, path), patterns)
                )
            else:
                self._changed[output] = results_changed(self._session, run)
        return self._changed[output]

    @property
    def summary(self) -> dict[str, Any] | None:
        if not self._summary_read:
            found = summaries.summary_output(self.run, self.outputs, self.spec)
            read = summaries.read_summary(self._artifacts, found) if found is not None else None
            self._summary = read.as_payload() if read is not None else None
            self._summary_read = True
        return self._summary


def results_changed(
    session: Session, run: RunRow, counts: Callable[[str], bool] | None = None, *, require: bool = False
) -> bool:
    """Whether a succeeded run's outputs differ from those of the previous computed success of
    the same model, step and item with the same parameters (True when there is none). Only the
    outputs ``counts`` accepts are compared; with ``require``, a run that wrote none of them
    brought no changed results."""
    mine = _counted(notify_queries.output_digests(session, run.id), counts)
    if require and not mine:
        return False
    before, looked = run.id, 0
    while looked < _CHANGE_LOOKBACK:
        earlier = notify_queries.earlier_computed_successes(session, run, before, _LOOKBACK_BATCH)
        for other in earlier:
            if other.params == run.params:
                return _counted(notify_queries.output_digests(session, other.id), counts) != mine
        if len(earlier) < _LOOKBACK_BATCH:
            return True
        before, looked = earlier[-1].id, looked + len(earlier)
    return True


def _counted(digests: dict[str, str], counts: Callable[[str], bool] | None) -> dict[str, str]:
    return digests if counts is None else {path: sha for path, sha in digests.items() if counts(path)}


def _matches(names: Sequence[str], patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for name in names for pattern in patterns)


def covers(subscription: SubscriptionRow, run: RunRow) -> bool:
    """Whether ``subscription`` is about ``run`` (its model, step, run and parameters; not yet
    whether the run's ending is one it asks for)."""
    if subscription.run_id is not None:
        if subscription.run_id != run.id:
            return False
    elif subscription.model != run.model_name:
        return False
    elif subscription.step is not None:
        if run.step != subscription.step or run.parent_id is None:
            return False
    elif run.parent_id is not None:
        return False
    return all(
        _same_value(run.params.get(name, _MISSING), value) for name, value in (subscription.params or {}).items()
    )


_MISSING = object()


def _same_value(actual: object, wanted: object) -> bool:
    """JSON equality as a person means it: 2 is 2.0, but true is not 1."""
    if isinstance(actual, bool) or isinstance(wanted, bool):
        return isinstance(actual, bool) and isinstance(wanted, bool) and actual == wanted
    return actual == wanted


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
