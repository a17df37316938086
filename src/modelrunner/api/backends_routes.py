"""/api/v1/backends: where runs execute, whether each backend can reach its engine, its load."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from modelrunner.api.deps import AccessDep, PlatformDep
from modelrunner.engine.backend_overview import BackendOverview

router = APIRouter(tags=["backends"])


class BackendOut(BaseModel):
    name: str = Field(description="The name runs are routed to (`backends:` in modelrunner.yaml)")
    type: str = Field(description="local, dask, ...")
    served: bool = Field(description="Whether this server runs it (one declared since it started does not yet)")
    healthy: bool = Field(description="Served, and it reaches its engine")
    problem: str | None = Field(description="What keeps it from working, for a person to act on")
    running: int = Field(description="Its attempts starting or running")
    queued: int = Field(description="Runs waiting for it")

    @classmethod
    def of(cls, found: BackendOverview) -> BackendOut:
        return cls(
            name=found.name,
            type=found.type,
            served=found.served,
            healthy=found.healthy,
            problem=found.problem,
            running=found.running,
            queued=found.queued,
        )


@router.get("/backends", response_model=list[BackendOut], summary="List the backends with their health and load")
def list_backends(platform: PlatformDep, access: AccessDep) -> list[BackendOut]:
    """Every backend `modelrunner.yaml` declares, in its order, and any other that still has
    runs. Needs a signed-in user."""
    access.require_signed_in("listing backends")
    return [BackendOut.of(found) for found in platform.backend_overview()]
