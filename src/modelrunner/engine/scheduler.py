"""Schedules: runs created from a cron expression read in a time zone.

What callers can rely on:

- a tick fires at most once, whatever the number of servers or restarts: the schedule's state
  moves by compare-and-set in the same transaction that records the firing and its runs;
- a new schedule starts at its next tick after now (no back-fill); after downtime the newest
  missed tick fires once, not once per missed tick;
- a schedule switched off (``enabled: false``, or its model's ``automatic: false``) fires nothing
  and owes nothing: switched on again, it starts at its next tick after now. An edit of its cron
  or time zone also starts it afresh from now;
- ``overlap: skip`` records a tick whose previous firing's runs (a manual firing's included)
  still go as ``skipped``; ``overlap: queue`` records it as ``waiting`` and submits it, with the
  schedule's parameters as they are then, once those runs have ended (one firing waits at a
  time: ticks meanwhile are skipped);
- a firing whose runs cannot be submitted is recorded ``failed`` with the error, and the
  schedule moves on to its next tick (never retried);
- the profile's switch (``automatic=False``) makes this process leave schedules alone entirely:
  it neither fires nor moves their state, so it cannot disturb a server sharing the database.

DST rules are those of :mod:`modelrunner.engine.cron_ticks`.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from modelrunner.clock import utcnow
from modelrunner.engine import firings
from modelrunner.engine.cron_ticks import CronTicks
from modelrunner.engine.firings import FiringStatus, Plan
from modelrunner.engine.submit import Submitter
from modelrunner.errors import AlreadyExists, ChangedMeanwhile, ModelrunnerError
from modelrunner.spec.automation_spec import Overlap
from modelrunner.spec.workspace import Schedule, Workspace
from modelrunner.store import automation_queries
from modelrunner.store.database import Database
from modelrunner.store.tables import FiringRow, ScheduleStateRow

log = logging.getLogger("modelrunner.scheduler")

# Stored as the next tick of an expression that never matches (e.g. 30 February).
_NEVER = dt.datetime(9999, 12, 31, tzinfo=dt.UTC)
# Ends a schedule's state signature while it is switched off: switching it on changes the
# signature, which starts it afresh from now instead of catching up on the ticks it was off for.
_OFF = " off"
_WAITING_BATCH = 100


@dataclass(frozen=True)
class ScheduleOverview:
    """A schedule as ``schedules list`` shows it."""

    name: str
    model: str
    cron: str
    timezone: str
    enabled: bool
    active: bool
    paused_by: str | None  # why it does not fire, when it does not
    overlap: str
    runs_per_firing: int
    next_fire_at: dt.datetime | None  # None while switched off
    last_fired_at: dt.datetime | None  # the tick it last fired for
    last_firing: FiringRow | None  # the newest firing, manual ones included


class Scheduler:
    """Fires the workspace's schedules; ``tick()`` is called by the automation loop."""

    def __init__(
        self,
        database: Database,
        workspace: Workspace,
        submitter: Submitter,
        clock: Callable[[], dt.datetime] = utcnow,
        *,
        automatic: bool = True,
    ) -> None:
        self._database = database
        self._workspace = workspace
        self._submitter = submitter
        self._clock = clock
        self._automatic = automatic

    def tick(self) -> int:
        """Submit the waiting firings that may go, and fire the schedules that are due; the
        number of runs queued."""
        if not self._automatic:
            return 0
        now = self._clock()
        schedules = self._unique_schedules()
        created = self._submit_waiting(schedules)
        with self._database.read() as session:
            states = automation_queries.schedule_states(session)
        for schedule in schedules.values():
            try:
                created += self._advance(schedule, states.get(schedule.name), now)
            except ModelrunnerError as exc:  # one schedule's trouble must not stop the others
                log.warning("schedule %s: %s", schedule.name, exc.message)
        return created

    def fire_now(self, name: str) -> FiringRow:
        """Fire the schedule ``name`` (full or unique short name) once, now, whatever its cron,
        overlap or switches say: it was asked for. Its next tick stays where it is. NotFound for
        an unknown name. The firing is ``submitted``, or ``failed`` with the reason."""
        schedule = self._workspace.schedule(name)
        planned = self._plan(schedule)
        with self._database.write() as session:
            recorded = firings.record(session, self._submitter, _rule(schedule), f"manual:{uuid.uuid4().hex}", planned)
        assert recorded is not None  # the cause is new
        return recorded.firing

    def firings(self, name: str, limit: int) -> list[FiringRow]:
        """The schedule's firings, newest first; NotFound for an unknown schedule."""
        schedule = self._workspace.schedule(name)
        with self._database.read() as session:
            return automation_queries.firings_of(session, _rule(schedule), limit)

    def overview(self) -> list[ScheduleOverview]:
        """Every schedule of the workspace with its next tick (computed from the spec when the
        scheduler has not seen it yet) and its last firing."""
        now = self._clock()
        schedules = self._workspace.schedules()
        models = {model.name for model in self._workspace.models()}
        with self._database.read() as session:
            states = automation_queries.schedule_states(session)
            last = automation_queries.last_firings(session, [_rule(s) for s in schedules])
        found = []
        for schedule in schedules:
            spec, state = schedule.spec, states.get(schedule.name)
            paused_by = self._paused_by(schedule, models)
            next_at: dt.datetime | None = None
            if paused_by is None:
                if state is not None and state.cron == _signature(schedule, active=True):
                    next_at = state.next_fire_at
                else:
                    next_at = CronTicks(spec.cron, spec.timezone).next_after(now)
            found.append(
                ScheduleOverview(
                    name=schedule.name,
                    model=schedule.model,
                    cron=spec.cron,
                    timezone=spec.timezone,
                    enabled=spec.enabled,
                    active=paused_by is None,
                    paused_by=paused_by,
                    overlap=spec.overlap.value,
                    runs_per_firing=len(spec.parameter_sets()),
                    next_fire_at=None if next_at == _NEVER else next_at,
                    last_fired_at=state.last_fired_at if state else None,
                    last_firing=last.get(_rule(schedule)),
                )
            )
        return found

    # --- ticks ------------------------------------------------------------------------------

    def _advance(self, schedule: Schedule, state: ScheduleStateRow | None, now: dt.datetime) -> int:
        """Start, re-sign or fire one schedule; the number of runs queued."""
        ticks = CronTicks(schedule.spec.cron, schedule.spec.timezone)
        signature = _signature(schedule, active=schedule.active)
        if state is None:
            if schedule.active:  # first seen: its next tick after now, nothing back-filled
                self._start(schedule.name, signature, ticks.next_after(now) or _NEVER, now)
            return 0
        if state.cron != signature:  # edited, switched off, or switched on again
            with self._database.write() as session:
                values = {"cron": signature, "next_fire_at": ticks.next_after(now) or _NEVER, "updated_at": now}
                automation_queries.resign_schedule_if(session, schedule.name, signature=state.cron, values=values)
            return 0
        if not schedule.active or now < state.next_fire_at:
            return 0
        return self._fire_tick(schedule, state, ticks, now)

    def _start(self, name: str, signature: str, next_at: dt.datetime, now: dt.datetime) -> None:
        row = ScheduleStateRow(name=name, cron=signature, next_fire_at=next_at, last_fired_at=None, updated_at=now)
        try:
            with self._database.write() as session:
                automation_queries.add_schedule_state(session, row)
        except AlreadyExists:
            pass  # another server started it first, at the same tick

    def _fire_tick(self, schedule: Schedule, state: ScheduleStateRow, ticks: CronTicks, now: dt.datetime) -> int:
        # Only the newest missed tick fires: after downtime, one firing, not one per tick missed.
        tick_at = max(ticks.latest_until(now) or state.next_fire_at, state.next_fire_at)
        planned = self._plan(schedule)  # outside the transaction: prepare may write the model version
        values = {"next_fire_at": ticks.next_after(now) or _NEVER, "last_fired_at": tick_at, "updated_at": now}
        try:
            with self._database.write() as session:
                automation_queries.move_schedule(
                    session, schedule.name, next_fire_at=state.next_fire_at, signature=state.cron, values=values
                )
                status, detail = self._overlap(session, schedule)
                recorded = firings.record(
                    session,
                    self._submitter,
                    _rule(schedule),
                    f"tick:{tick_at.isoformat()}",
                    planned,
                    status=status,
                    detail=detail,
                )
        except ChangedMeanwhile:
            return 0  # another server fired this tick first
        if recorded is not None and recorded.firing.status == FiringStatus.FAILED:
            log.warning("schedule %s could not submit: %s", schedule.name, recorded.firing.detail)
        return recorded.created if recorded else 0

    def _overlap(self, session: Session, schedule: Schedule) -> tuple[FiringStatus, str]:
        """Whether this tick submits, waits or is skipped, by the previous firing's runs."""
        rule = _rule(schedule)
        waiting = automation_queries.newest_firing(session, rule, [FiringStatus.WAITING.value])
        if waiting is not None:
            return FiringStatus.SKIPPED, f"firing {waiting.id} already waits for the previous runs to end"
        previous = automation_queries.newest_firing(session, rule, [FiringStatus.SUBMITTED.value])
        going = firings.unfinished_runs(session, previous) if previous is not None else []
        if not going:
            return FiringStatus.SUBMITTED, ""
        shown = _runs(going)
        if schedule.spec.overlap == Overlap.QUEUE:
            return FiringStatus.WAITING, f"waits for {shown} of the previous firing to end (overlap: queue)"
        return FiringStatus.SKIPPED, f"{shown} of the previous firing still going (overlap: skip)"

    def _submit_waiting(self, schedules: dict[str, Schedule]) -> int:
        """Submit each waiting firing whose previous firing's runs have all ended."""
        with self._database.read() as session:
            waiting = automation_queries.firings_in(session, FiringStatus.WAITING.value, _WAITING_BATCH)
        created = 0
        for firing in waiting:
            if not firing.rule.startswith(firings.SCHEDULE):
                continue
            schedule = schedules.get(firing.rule.removeprefix(firings.SCHEDULE))
            if schedule is None or not schedule.active:
                with self._database.write() as session:
                    firings.skip_waiting(session, firing.id, "the schedule was removed or switched off while it waited")
                continue
            with self._database.read() as session:
                previous = automation_queries.newest_firing(
                    session, firing.rule, [FiringStatus.SUBMITTED.value], before_id=firing.id
                )
                if previous is not None and firings.unfinished_runs(session, previous):
                    continue
            planned = self._plan(schedule)
            with self._database.write() as session:
                recorded = firings.submit_waiting(session, self._submitter, firing, planned)
            created += recorded.created if recorded else 0
        return created

    # --- helpers ----------------------------------------------------------------------------

    def _plan(self, schedule: Schedule) -> Plan:
        return firings.plan(
            self._submitter,
            schedule.model,
            schedule.spec.parameter_sets(),
            lambda index: f"{_rule(schedule)}#{index}",
            overrides=schedule.spec.run_overrides(),
        )

    def _unique_schedules(self) -> dict[str, Schedule]:
        """The schedules by name; a name declared twice (a spec problem `check` reports) is left
        out, as either would move the other's state."""
        every = self._workspace.schedules()
        counts = Counter(s.name for s in every)
        for name in sorted(n for n, c in counts.items() if c > 1):
            log.warning("schedule %s is declared twice; it does not fire until one is renamed", name)
        return {s.name: s for s in every if counts[s.name] == 1}

    def _paused_by(self, schedule: Schedule, models: set[str]) -> str | None:
        if not self._automatic:
            return "this server's profile sets automatic: false"
        if not schedule.spec.enabled:
            return "enabled: false"
        if schedule.model not in models:
            return f"model '{schedule.model}' is unknown or its model.yaml is broken"
        if not schedule.model_automatic:
            return f"model '{schedule.model}' has automatic: false"
        return None


def _rule(schedule: Schedule) -> str:
    return f"{firings.SCHEDULE}{schedule.name}"


def _signature(schedule: Schedule, *, active: bool) -> str:
    """What the stored next tick was computed from: the cron and time zone (and the switch)."""
    return f"{schedule.spec.cron} {schedule.spec.timezone}{'' if active else _OFF}"


def _runs(run_ids: list[int]) -> str:
    shown = ", ".join(map(str, run_ids[:10])) + (" ..." if len(run_ids) > 10 else "")
    return f"run{'s' if len(run_ids) != 1 else ''} {shown}"
