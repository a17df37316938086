"""Triggers: runs created from events (a new data version, a run that succeeded).

What callers can rely on:

- a trigger seen for the first time starts after the newest event of its type: history does not
  fire it;
- a trigger fires at most once per event, whatever the number of servers or restarts: its cursor
  moves by compare-and-set in the same transaction that records the firing (UNIQUE per rule and
  event) and submits the run;
- ``dataset.version_added`` fires for the version events a sync does not mark as back-fill
  (history: ``sync --all``, see ``data/sync.py``); the run's inputs reading that dataset are
  pinned to the event's version;
- a parameter value written as the whole string ``"{event.<dotted.path>}"`` becomes that value
  of the event's data, with its JSON type; a path the event does not have makes the firing
  ``failed`` with a detail naming it;
- no loops through itself: a trigger never fires for a run it created (the event's ``origin``
  is the trigger; step runs inherit the origin of their pipeline run), such events are recorded
  as ``skipped`` firings. Chains through several triggers end where parameters repeat (the run
  is answered from the cache, which writes no ``run.succeeded``);
- a trigger switched off (``enabled: false``, its model's ``automatic: false``) follows the
  events without firing, so switching it on does not fire for what happened meanwhile; the
  profile's switch (``automatic=False``) makes this process leave triggers alone entirely.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import re
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from modelrunner.clock import utcnow
from modelrunner.engine import firings
from modelrunner.engine.firings import FiringStatus, Plan
from modelrunner.engine.submit import Submitter
from modelrunner.errors import AlreadyExists, ChangedMeanwhile, InvalidInput, ModelrunnerError
from modelrunner.spec.automation_spec import TriggerEvent
from modelrunner.spec.workspace import Trigger, Workspace
from modelrunner.store import automation_queries
from modelrunner.store.automation_queries import Event
from modelrunner.store.database import Database
from modelrunner.store.tables import FiringRow, TriggerCursorRow

log = logging.getLogger("modelrunner.triggers")

_BATCH = 500
# On PostgreSQL an event id is taken when the row is inserted, not when its transaction commits,
# so an event with a lower id can appear after a higher one was read. Events are read only once
# they are this old, longer than any transaction that writes events lasts. SQLite commits
# writers one at a time, in id order: no wait there.
_SETTLE_SECONDS = 2.0
_EVENT_FIELD = re.compile(r"^\{event\.([^{}\s]+)\}$")


@dataclass(frozen=True)
class TriggerOverview:
    """A trigger as ``triggers list`` shows it."""

    name: str
    model: str
    on: str
    watches: str  # the dataset, or the model (``model/step`` for one step)
    params: dict[str, Any]
    enabled: bool
    active: bool
    paused_by: str | None
    last_event_id: int | None  # the cursor; None until the trigger is first seen
    last_firings: list[FiringRow]  # newest first


class Triggers:
    """Fires the workspace's triggers; ``tick()`` is called by the automation loop."""

    def __init__(
        self,
        database: Database,
        workspace: Workspace,
        submitter: Submitter,
        automatic: bool = True,
        *,
        settle_seconds: float | None = None,
    ) -> None:
        self._database = database
        self._workspace = workspace
        self._submitter = submitter
        self._automatic = automatic
        settle = settle_seconds if settle_seconds is not None else (0.0 if database.is_sqlite else _SETTLE_SECONDS)
        self._settle = dt.timedelta(seconds=settle)

    def tick(self) -> int:
        """Evaluate the events each trigger has not seen; the number of runs queued."""
        if not self._automatic:
            return 0
        with self._database.read() as session:
            cursors = automation_queries.trigger_cursors(session)
        created = 0
        for trigger in self._unique_triggers():
            try:
                created += self._advance(trigger, cursors.get(trigger.name))
            except ModelrunnerError as exc:  # one trigger's trouble must not stop the others
                log.warning("trigger %s: %s", trigger.name, exc.message)
        return created

    def overview(self, firings_per_trigger: int = 5) -> list[TriggerOverview]:
        """Every trigger of the workspace, its cursor and its newest firings."""
        triggers = self._workspace.triggers()
        with self._database.read() as session:
            cursors = automation_queries.trigger_cursors(session)
            last = {t.name: automation_queries.firings_of(session, _rule(t), firings_per_trigger) for t in triggers}
        found = []
        for trigger in triggers:
            spec, cursor = trigger.spec, cursors.get(trigger.name)
            paused_by = self._paused_by(trigger)
            watched = spec.dataset if spec.on == TriggerEvent.VERSION_ADDED else spec.model
            found.append(
                TriggerOverview(
                    name=trigger.name,
                    model=trigger.model,
                    on=spec.on.value,
                    watches=f"{watched}/{spec.step}" if spec.step else str(watched),
                    params=dict(spec.params),
                    enabled=spec.enabled,
                    active=paused_by is None,
                    paused_by=paused_by,
                    last_event_id=cursor.last_event_id if cursor else None,
                    last_firings=last[trigger.name],
                )
            )
        return found

    def firings(self, name: str, limit: int) -> list[FiringRow]:
        """The trigger's firings, newest first; NotFound for an unknown trigger."""
        trigger = self._workspace.trigger(name)
        with self._database.read() as session:
            return automation_queries.firings_of(session, _rule(trigger), limit)

    # --- ticks ------------------------------------------------------------------------------

    def _advance(self, trigger: Trigger, cursor: TriggerCursorRow | None) -> int:
        kind = trigger.spec.on.value
        if cursor is None:
            self._start(trigger.name, kind)
            return 0
        position = cursor.last_event_id
        if not trigger.active:
            # Lost to another server: it follows the events as well.
            with suppress(ChangedMeanwhile), self._database.write() as session:
                newest = automation_queries.newest_event_id(session, kind)
                if newest > position:
                    automation_queries.move_cursor(session, trigger.name, from_id=position, to_id=newest, at=utcnow())
            return 0
        created = 0
        while True:
            with self._database.read() as session:
                events = automation_queries.events_after(session, kind, position, _BATCH)
            settled_before = utcnow() - self._settle
            more = len(events) == _BATCH  # a full batch: there may be more after it
            passed = position  # the last event read that does not fire the trigger
            for event in events:
                if event.created_at > settled_before:
                    more = False  # this event and those after it wait for a later tick
                    break
                if not _matches(trigger, event):
                    passed = event.id
                    continue
                fired = self._fire(trigger, event, position)
                if fired is None:
                    return created  # another server is ahead; the next tick reads again
                created += fired
                position = passed = event.id
            if passed != position:
                # Lost to another server: the next _fire from here finds the cursor elsewhere and stops.
                with suppress(ChangedMeanwhile), self._database.write() as session:
                    automation_queries.move_cursor(session, trigger.name, from_id=position, to_id=passed, at=utcnow())
                position = passed
            if not more:
                return created

    def _start(self, name: str, kind: str) -> None:
        try:
            with self._database.write() as session:
                newest = automation_queries.newest_event_id(session, kind)
                automation_queries.add_trigger_cursor(
                    session, TriggerCursorRow(name=name, last_event_id=newest, updated_at=utcnow())
                )
        except AlreadyExists:
            pass  # another server saw it first

    def _fire(self, trigger: Trigger, event: Event, position: int) -> int | None:
        """Fire for ``event`` and move the cursor there from ``position`` (passing any events
        in between, which do not match), in one transaction; the runs queued, or None if the
        cursor was no longer at ``position``."""
        rule = _rule(trigger)
        status, detail = FiringStatus.SUBMITTED, ""
        if event.data.get("origin") == rule:
            planned = Plan([])
            status = FiringStatus.SKIPPED
            detail = (
                f"run {event.data.get('run_id')} was created by this trigger; "
                "a trigger never fires for its own runs, so it cannot loop"
            )
        else:
            planned = self._plan(trigger, event)
        try:
            with self._database.write() as session:
                automation_queries.move_cursor(session, trigger.name, from_id=position, to_id=event.id, at=utcnow())
                recorded = firings.record(
                    session, self._submitter, rule, f"event:{event.id}", planned, status=status, detail=detail
                )
        except ChangedMeanwhile:
            return None
        if recorded is not None and recorded.firing.status == FiringStatus.FAILED:
            log.warning("trigger %s could not submit for event %s: %s", trigger.name, event.id, recorded.firing.detail)
        return recorded.created if recorded else 0

    def _plan(self, trigger: Trigger, event: Event) -> Plan:
        try:
            params = event_params(trigger.spec.params, event.data)
            pins: dict[str, str] = {}
            if trigger.spec.on == TriggerEvent.VERSION_ADDED:
                model = self._workspace.model(trigger.model)
                dataset, version = event.data["dataset"], str(event.data["version"])
                pins = {name: version for name, used in model.spec.inputs.items() if used == dataset}
        except ModelrunnerError as exc:
            return Plan([], exc.message)
        return firings.plan(self._submitter, trigger.model, [params], lambda _index: _rule(trigger), inputs=pins)

    # --- helpers ----------------------------------------------------------------------------

    def _unique_triggers(self) -> list[Trigger]:
        """The triggers; a name declared twice in one model is left out, as either would move
        the other's cursor."""
        every = self._workspace.triggers()
        counts = Counter(t.name for t in every)
        for name in sorted(n for n, c in counts.items() if c > 1):
            log.warning("trigger %s is declared twice; it does not fire until one is renamed", name)
        return [t for t in every if counts[t.name] == 1]

    def _paused_by(self, trigger: Trigger) -> str | None:
        if not self._automatic:
            return "this server's profile sets automatic: false"
        if not trigger.spec.enabled:
            return "enabled: false"
        if not trigger.model_automatic:
            return f"model '{trigger.model}' has automatic: false"
        return None


def event_params(params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """``params`` with every value written ``"{event.<dotted.path>}"`` (the whole string, at any
    depth) replaced by that value of the event's ``data``. InvalidInput naming the parameter for
    a path the event does not have."""
    return {name: _substituted(value, data, f"params.{name}") for name, value in params.items()}


def _substituted(value: Any, data: dict[str, Any], where: str) -> Any:
    if isinstance(value, str):
        found = _EVENT_FIELD.match(value)
        return _field(data, found.group(1), where) if found else value
    if isinstance(value, dict):
        return {key: _substituted(item, data, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list):
        return [_substituted(item, data, f"{where}.{index}") for index, item in enumerate(value)]
    return value


def _field(data: dict[str, Any], path: str, where: str) -> Any:
    current: Any = data
    for depth, part in enumerate(path.split(".")):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            known = ", ".join(sorted(map(str, current))) if isinstance(current, dict) else "none"
            at = ".".join(["event", *path.split(".")[:depth]])
            raise InvalidInput(f"{where}: the event has no field '{path}' (fields of {at}: {known})", field=where)
    return copy.deepcopy(current)


def _matches(trigger: Trigger, event: Event) -> bool:
    spec, data = trigger.spec, event.data
    if spec.on == TriggerEvent.VERSION_ADDED:
        return data.get("dataset") == spec.dataset and not data.get("backfill", False)
    return data.get("model") == spec.model and data.get("step") == spec.step


def _rule(trigger: Trigger) -> str:
    return f"{firings.TRIGGER}{trigger.name}"
