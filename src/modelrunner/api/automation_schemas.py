"""Response bodies of /api/v1/schedules and /api/v1/triggers."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from pydantic import BaseModel, Field

from modelrunner.engine.scheduler import ScheduleOverview
from modelrunner.engine.triggers import TriggerOverview
from modelrunner.store.tables import FiringRow


class FiringOut(BaseModel):
    id: int
    rule: str = Field(description="`schedule:<model>/<schedule>` or `trigger:<model>/<trigger>`")
    cause: str = Field(description="`tick:<time>` (a cron tick), `event:<id>` (an event) or `manual:<id>` (asked for)")
    status: str = Field(
        description="submitted (runs created, answered from the cache or joined), skipped, waiting "
        "(overlap: queue, for the previous runs to end) or failed (`detail` says why)"
    )
    run_ids: list[int]
    detail: str
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, row: FiringRow) -> FiringOut:
        return cls.model_validate(row, from_attributes=True)


class ScheduleOut(BaseModel):
    name: str = Field(description="`<model>/<schedule>`")
    model: str
    cron: str = Field(description="Five fields, read in `timezone`")
    timezone: str
    enabled: bool = Field(description="The schedule's own `enabled`")
    active: bool = Field(description="Whether it fires: enabled, its model automatic, and this server's profile too")
    paused_by: str | None = Field(description="Why it does not fire, when it does not")
    overlap: str = Field(description="skip or queue: what a tick does while the previous firing's runs still go")
    runs_per_firing: int = Field(description="1, or the number of `each` items")
    next_fire_at: dt.datetime | None = Field(description="The next tick (UTC); null while it does not fire")
    next_fire_at_local: dt.datetime | None = Field(description="The same instant in the schedule's time zone")
    last_fired_at: dt.datetime | None = Field(description="The tick it last fired for (manual firings aside)")
    last_firing: FiringOut | None = Field(description="The newest firing, manual ones included")

    @classmethod
    def of(cls, overview: ScheduleOverview) -> ScheduleOut:
        local = (
            overview.next_fire_at.astimezone(zoneinfo.ZoneInfo(overview.timezone)) if overview.next_fire_at else None
        )
        return cls(
            name=overview.name,
            model=overview.model,
            cron=overview.cron,
            timezone=overview.timezone,
            enabled=overview.enabled,
            active=overview.active,
            paused_by=overview.paused_by,
            overlap=overview.overlap,
            runs_per_firing=overview.runs_per_firing,
            next_fire_at=overview.next_fire_at,
            next_fire_at_local=local,
            last_fired_at=overview.last_fired_at,
            last_firing=FiringOut.of(overview.last_firing) if overview.last_firing else None,
        )


class TriggerOut(BaseModel):
    name: str = Field(description="`<model>/<trigger>`")
    model: str = Field(description="The model it runs")
    on: str = Field(description="dataset.version_added or run.succeeded")
    watches: str = Field(description="The dataset, or the model (`model/step` for one step of a pipeline)")
    params: dict[str, Any] = Field(description='As written; "{event.<field>}" values take the event\'s field')
    enabled: bool
    active: bool
    paused_by: str | None
    last_event_id: int | None = Field(description="The last event evaluated; null until the server first sees it")
    last_firings: list[FiringOut] = Field(description="Newest first")

    @classmethod
    def of(cls, overview: TriggerOverview) -> TriggerOut:
        return cls(
            name=overview.name,
            model=overview.model,
            on=overview.on,
            watches=overview.watches,
            params=overview.params,
            enabled=overview.enabled,
            active=overview.active,
            paused_by=overview.paused_by,
            last_event_id=overview.last_event_id,
            last_firings=[FiringOut.of(row) for row in overview.last_firings],
        )
