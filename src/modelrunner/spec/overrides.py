"""Overrides per run: resource values one run may set for itself, within limits its model declares.

A model opts in with ``overridable:`` in model.yaml, e.g. ``overridable: {timeout: {max: 6h}}``;
a run then asks ``{"timeout": "2h"}`` (``modelrunner run --timeout 2h``, the API's ``overrides``,
the web form). Nothing is overridable unless declared, and a value over the declared ``max`` is
refused naming the limit.

An override is not part of the cache key: a longer timeout does not change what a model computes,
only whether it is allowed to finish. So an identical run already computed answers a request with
an override, and one in flight is joined (it keeps its own timeout). It travels with the run, in
its ``plan``, to the runner that executes it (every step of a pipeline run gets it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from modelrunner import units
from modelrunner.errors import InvalidInput
from modelrunner.spec.duration import HINT, parse_duration


class DurationLimit(BaseModel):
    """The bounds a run's own value of a duration must stay within (seconds, or ``"6h"``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max: float = Field(gt=0, description="The longest a run may ask for: seconds, or a duration like 6h")

    @field_validator("max", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value


class Overridable(BaseModel):
    """``overridable:`` in model.yaml: the resource fields a run may set for itself, each with its limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout: DurationLimit | None = Field(default=None, description="A run may set its own timeout up to max")


OVERRIDE_FIELDS = tuple(Overridable.model_fields)


def checked_overrides(model: str, allowed: Overridable, requested: Mapping[str, Any] | None) -> dict[str, float]:
    """``requested`` as values a run keeps (seconds for a duration); InvalidInput naming the field
    (``overrides.<name>``) for a field the model does not let runs override, a value that is no
    duration, or one over the model's limit."""
    checked: dict[str, float] = {}
    for name, value in (requested or {}).items():
        where = f"overrides.{name}"
        if name not in OVERRIDE_FIELDS:
            raise InvalidInput(
                f"{where}: '{name}' cannot be set per run (overridable fields: {', '.join(OVERRIDE_FIELDS)})",
                field=where,
            )
        limit = getattr(allowed, name)
        if limit is None:
            raise InvalidInput(
                f"{where}: model '{model}' does not let a run set its own {name} "
                f"(its model.yaml would declare `overridable: {{{name}: {{max: ...}}}}`)",
                field=where,
            )
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise InvalidInput(f"{where}: {value!r} is not valid; {HINT}", field=where) from None
        if seconds <= 0:
            raise InvalidInput(f"{where}: must be more than 0 seconds", field=where)
        if seconds > limit.max:
            raise InvalidInput(
                f"{where}: {units.duration(seconds)} is over the limit of model '{model}' "
                f"(overridable.{name}.max: {units.duration(limit.max)})",
                field=where,
                limit=limit.max,
            )
        checked[name] = seconds
    return checked


def overrides_of(plan: Mapping[str, Any] | None) -> dict[str, float]:
    """The overrides a run keeps in its plan (none for most runs)."""
    return dict((plan or {}).get("overrides") or {})
