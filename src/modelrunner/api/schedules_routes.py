"""/api/v1/schedules and /api/v1/triggers: the rules that create runs, and their firings.

Names hold a slash (``<model>/<schedule>``): routes take the whole rest of the path, and a short
name (the part after the slash) is accepted when no other schedule has it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from modelrunner.api.automation_schemas import FiringOut, ScheduleOut, TriggerOut
from modelrunner.api.deps import AccessDep, PlatformDep
from modelrunner.spec.access_spec import Level

router = APIRouter(tags=["schedules and triggers"])

_UNKNOWN_SCHEDULE: dict[int | str, dict[str, Any]] = {404: {"description": "Unknown (or ambiguous) schedule"}}
_UNKNOWN_TRIGGER: dict[int | str, dict[str, Any]] = {404: {"description": "Unknown (or ambiguous) trigger"}}

RuleName = Annotated[str, Path(description="`<model>/<name>`, or `<name>` alone when unique")]
Limit = Annotated[int, Query(ge=1, le=500, description="How many of the newest firings")]


@router.get("/schedules", response_model=list[ScheduleOut], summary="List the schedules with their next fire times")
def list_schedules(platform: PlatformDep, access: AccessDep) -> list[ScheduleOut]:
    """Every schedule of the workspace's `model.yaml` files and `modelrunner.yaml` whose model the
    caller may view, by name."""
    access.require_listing("listing schedules")
    return [ScheduleOut.of(o) for o in platform.scheduler.overview() if access.may(o.model, Level.VIEW)]


@router.post(
    "/schedules/{name:path}/run",
    response_model=FiringOut,
    status_code=201,
    summary="Fire a schedule now",
    responses={
        201: {"description": "The firing: `submitted` with its run ids, or `failed` with the reason in `detail`"},
        **_UNKNOWN_SCHEDULE,
    },
)
def run_schedule(name: RuleName, platform: PlatformDep, access: AccessDep) -> FiringOut:
    """Submits the schedule's runs (one per `each` item) at once, whatever its cron, overlap
    policy or switches say; its next tick stays where it is. Needs `run` on the model."""
    access.require(platform.workspace.schedule(name).model, Level.RUN, "firing a schedule")
    firing = platform.scheduler.fire_now(name)
    if firing.run_ids:
        platform.dispatcher.wake(queued=True)
        platform.automation.wake()  # a pipeline run starts its first steps there
    return FiringOut.of(firing)


@router.get(
    "/schedules/{name:path}/firings",
    response_model=list[FiringOut],
    summary="A schedule's firings, newest first",
    responses=_UNKNOWN_SCHEDULE,
)
def schedule_firings(name: RuleName, platform: PlatformDep, access: AccessDep, limit: Limit = 20) -> list[FiringOut]:
    access.require(platform.workspace.schedule(name).model, Level.VIEW, "reading a schedule's firings")
    return [FiringOut.of(row) for row in platform.scheduler.firings(name, limit)]


@router.get(
    "/triggers", response_model=list[TriggerOut], summary="List the triggers with their cursors and last firings"
)
def list_triggers(platform: PlatformDep, access: AccessDep) -> list[TriggerOut]:
    """Every trigger of the models the caller may view, by name, with its five newest firings."""
    access.require_listing("listing triggers")
    return [TriggerOut.of(o) for o in platform.triggers.overview() if access.may(o.model, Level.VIEW)]


@router.get(
    "/triggers/{name:path}/firings",
    response_model=list[FiringOut],
    summary="A trigger's firings, newest first",
    responses=_UNKNOWN_TRIGGER,
)
def trigger_firings(name: RuleName, platform: PlatformDep, access: AccessDep, limit: Limit = 20) -> list[FiringOut]:
    access.require(platform.workspace.trigger(name).model, Level.VIEW, "reading a trigger's firings")
    return [FiringOut.of(row) for row in platform.triggers.firings(name, limit)]
