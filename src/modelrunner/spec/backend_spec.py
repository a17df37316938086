"""``backends:`` and ``routing:`` in ``modelrunner.yaml``: where runs execute, and who goes where."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from modelrunner.spec.names import check_name

DEFAULT_BACKEND = "local"


class LocalBackendSpec(BaseModel):
    """``type: local``: processes on the server's machine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["local"] = "local"
    slots: int | None = Field(default=None, ge=1, description="CPU slots; the server's --slots by default")


_SCHEDULER_ADDRESS = re.compile(r"^(tcp|tls|inproc|ws|wss|ucx)://\S+$")


class DaskBackendSpec(BaseModel):
    """``type: dask``: attempts as tasks of a Dask cluster (dask.distributed), reached through its
    scheduler. Needs ``pip install 'modelrunner[dask]'`` on the server and on every worker."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["dask"]
    scheduler: str = Field(description="The scheduler's address, e.g. tcp://10.0.0.5:8786")
    slots: int = Field(
        default=4, ge=1, description="How many model CPUs (a model's `resources.cpu`, rounded up) run at once"
    )
    resources: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Dask worker resources each attempt holds per CPU it asks for: `{CPU: 1}` makes a model with "
            "`cpu: 2` hold 2 of `CPU` on a worker started with `--resources CPU=8`. Empty: any worker thread"
        ),
    )

    @field_validator("scheduler")
    @classmethod
    def _valid_address(cls, value: str) -> str:
        if not _SCHEDULER_ADDRESS.match(value):
            raise ValueError(f"{value!r} is not a Dask scheduler address like tcp://host:8786")
        return value

    @field_validator("resources")
    @classmethod
    def _positive_amounts(cls, value: dict[str, float]) -> dict[str, float]:
        for name, amount in value.items():
            if amount <= 0:
                raise ValueError(f"the amount of {name!r} must be greater than 0")
        return value


def _local_unless_typed(value: Any) -> Any:
    # A backend without `type` is a local one, as it was before there were other types.
    if isinstance(value, dict) and "type" not in value:
        return {**value, "type": "local"}
    return value


BackendSpec = Annotated[
    LocalBackendSpec | DaskBackendSpec, Field(discriminator="type"), BeforeValidator(_local_unless_typed)
]
"""What ``backends.<name>`` in modelrunner.yaml declares; ``type`` chooses the kind."""

BACKEND_TYPES = frozenset({"local", "dask"})


class RoutingRule(BaseModel):
    """``{group: spot-team, backend: spot}``: runs submitted by members of ``group`` (of the models
    matching ``models``) go to ``backend``. The first matching rule wins."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    group: str
    backend: str
    models: list[str] = Field(default_factory=lambda: ["*"], description="Model names or globs")

    @field_validator("models", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("group", "backend")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return check_name(value)
