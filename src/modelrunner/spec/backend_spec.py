"""``backends:`` and ``routing:`` in ``modelrunner.yaml``: where runs execute, and who goes where."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from modelrunner.spec.names import check_name

DEFAULT_BACKEND = "local"


class LocalBackendSpec(BaseModel):
    """``type: local``: processes on the server's machine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["local"] = "local"
    slots: int | None = Field(default=None, ge=1, description="CPU slots; the server's --slots by default")


BackendSpec = LocalBackendSpec


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
