"""``access:`` in ``modelrunner.yaml``: who may view, run or administer which models."""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from modelrunner.spec.names import check_names


class Level(IntEnum):
    """What a grant allows; each level includes the ones below it."""

    VIEW = 1  # see the model, its runs, logs, events, outputs and the datasets it reads
    RUN = 2  # also submit and rerun runs, cancel one's own, fire its schedules, sync its datasets
    ADMIN = 3  # also cancel anyone's runs, choose a run's backend, delete its datasets' versions

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: Any) -> Level:
        if isinstance(value, Level):
            return value
        if isinstance(value, str) and value.upper() in cls.__members__:
            return cls[value.upper()]
        raise ValueError("must be one of view, run, admin")


class Grant(BaseModel):
    """``{models: "transport-*", allow: run}``: a level on the models whose names match a glob."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: list[str] = Field(description="Model names or globs (`*`, `transport-*`); one name or a list")
    allow: Level

    @field_validator("models", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("allow", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Level:
        return Level.parse(value)


class AccessSpec(BaseModel):
    """Grants for people who are not signed in, for everyone signed in, and per group.

    Without any grant, only site admins can do anything; there is no implicit access.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    anonymous: list[Grant] = Field(default_factory=list, description="Without a token (e.g. view public models)")
    signed_in: list[Grant] = Field(default_factory=list, description="Every user with a valid token")
    groups: dict[str, list[Grant]] = Field(default_factory=dict, description="Group name -> its grants")

    @field_validator("groups", mode="before")
    @classmethod
    def _valid_group_names(cls, value: Any) -> Any:
        if isinstance(value, dict):
            check_names(value, "group")
        return value
