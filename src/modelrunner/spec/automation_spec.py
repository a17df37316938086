"""Schedules and triggers as users write them: rules that create runs from the clock or from events."""

from __future__ import annotations

import re
import zoneinfo
from enum import StrEnum
from typing import Any

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modelrunner.spec.names import RESERVED_VARIABLE_PREFIX, check_name


def check_cron(value: str) -> str:
    """``value`` if it is a five-field cron expression; ValueError saying what one looks like."""
    if len(value.split()) != 5 or not croniter.is_valid(value):
        raise ValueError(f"{value!r} is not a five-field cron expression (minute hour day month weekday)")
    return value


def check_timezone(value: str) -> str:
    """``value`` if it names an IANA time zone."""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{value!r} is not a known time zone (e.g. 'UTC', 'America/New_York')") from exc
    return value


OVERRIDES_KEY = "overrides"  # in an each: item, the run's own resource values, not a parameter


class Overlap(StrEnum):
    SKIP = "skip"  # the previous runs of the schedule still go: this firing creates nothing
    QUEUE = "queue"  # the firing waits and submits once the previous runs have ended


class ScheduleSpec(BaseModel):
    """``schedules:`` in ``model.yaml`` (for that model) or in ``modelrunner.yaml`` (with ``model``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    model: str | None = Field(default=None, description="The model to run; only in modelrunner.yaml")
    cron: str = Field(description="Five-field cron expression, read in `timezone`")
    timezone: str = "UTC"
    params: dict[str, Any] = Field(default_factory=dict)
    each: list[dict[str, Any]] | None = Field(
        default=None,
        min_length=1,
        description="Parameter sets: one run per item at every firing; an item's `overrides:` (e.g. "
        "{timeout: 2h}) is that run's own, over the schedule's",
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Resource values of its runs (e.g. {timeout: 2h}), within the model's `overridable:` limits",
    )
    enabled: bool = True
    overlap: Overlap = Overlap.SKIP

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        return check_cron(value)

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        return check_timezone(value)

    @model_validator(mode="after")
    def _params_or_each(self) -> ScheduleSpec:
        if self.each is not None and self.params:
            raise ValueError("give either params (one run) or each (one run per item), not both")
        return self

    @field_validator("each")
    @classmethod
    def _item_overrides(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for index, item in enumerate(value or []):
            if not isinstance(item.get(OVERRIDES_KEY, {}), dict):
                raise ValueError(f"item {index}: {OVERRIDES_KEY} must be a mapping such as {{timeout: 2h}}")
        return value

    def parameter_sets(self) -> list[dict[str, Any]]:
        """The parameters of the runs one firing submits (an item's ``overrides:`` left out)."""
        items = self.each if self.each is not None else [self.params]
        return [{name: value for name, value in item.items() if name != OVERRIDES_KEY} for item in items]

    def run_overrides(self) -> list[dict[str, Any]]:
        """The overrides of each run one firing submits, in the order of ``parameter_sets``."""
        items = self.each if self.each is not None else [{}]
        return [{**self.overrides, **item.get(OVERRIDES_KEY, {})} for item in items]


class TriggerEvent(StrEnum):
    VERSION_ADDED = "dataset.version_added"
    RUN_SUCCEEDED = "run.succeeded"


class TriggerSpec(BaseModel):
    """``triggers:`` in ``model.yaml``: run this model when an event happens.

    A parameter value written as ``"{event.<field>}"`` takes that field of the event (for
    ``run.succeeded``, ``{event.params.region}`` reads the finished run's parameter).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str
    on: TriggerEvent
    dataset: str | None = Field(default=None, description="For dataset.version_added: the dataset watched")
    model: str | None = Field(default=None, description="For run.succeeded: the model watched")
    step: str | None = Field(default=None, description="For run.succeeded: one step of that model's pipeline")
    params: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, value: Any) -> Any:
        # YAML 1.1 reads an unquoted `on:` key as the boolean true.
        if isinstance(value, dict) and True in value:
            value = {("on" if key is True else key): item for key, item in value.items()}
        return value

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return check_name(value)

    @model_validator(mode="after")
    def _watched_thing(self) -> TriggerSpec:
        if self.on == TriggerEvent.VERSION_ADDED:
            if self.dataset is None:
                raise ValueError("on: dataset.version_added needs `dataset:` (the dataset watched)")
            if self.model is not None or self.step is not None:
                raise ValueError("on: dataset.version_added watches a dataset; remove `model`/`step`")
        else:
            if self.model is None:
                raise ValueError("on: run.succeeded needs `model:` (the model watched)")
            if self.dataset is not None:
                raise ValueError("on: run.succeeded watches a model; remove `dataset`")
        return self


_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ProfileSpec(BaseModel):
    """``profiles:`` in ``modelrunner.yaml``: settings switched together (``--profile test``).

    A value set explicitly (flag or ``MODELRUNNER_*`` variable) still wins over the profile.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str | None = None
    artifacts_url: str | None = None
    local_slots: int | None = Field(default=None, ge=1)
    publish: bool = Field(default=True, description="Whether pipeline steps marked `publish: true` run")
    automatic: bool = Field(default=True, description="Whether schedules and triggers create runs")
    notify: bool = Field(
        default=True, description="Whether this server sends notifications (false: a test copy mails nobody)"
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Variables every model run under this profile sees (with MODELRUNNER_PROFILE); part of the "
        "cache key, so runs under two profiles never share results. Not for secrets: they are stored with runs",
    )

    @field_validator("env", mode="before")
    @classmethod
    def _variables(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        variables = {}
        for name, given in value.items():
            if not isinstance(name, str) or not _VARIABLE.match(name):
                raise ValueError(f"{name!r} is not an environment variable name (letters, digits, _)")
            if name.startswith(RESERVED_VARIABLE_PREFIX):
                raise ValueError(f"{name}: names starting with {RESERVED_VARIABLE_PREFIX} are modelrunner's own")
            if isinstance(given, bool):
                given = "true" if given else "false"
            if not isinstance(given, str | int | float):
                raise ValueError(f"{name}: give a string or a number, not {type(given).__name__}")
            variables[name] = str(given)
        return variables
