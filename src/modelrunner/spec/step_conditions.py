"""A pipeline step's ``when:``: a condition on the run's parameters, read without any ``eval``.

The whole grammar: ``[not] params.<name> [(== | !=) <value>]``. Without a comparison the
parameter's truth decides (false, null, 0, "" and empty lists or objects are false); ``<value>``
is one YAML scalar (``uk``, ``"uk"``, ``3``, ``true``, ``null``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

_CONDITION = re.compile(
    r"^\s*(?P<not>not\s+)?params\.(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?:(?P<op>==|!=)\s*(?P<value>\S.*?))?\s*$"
)
FORM = "'params.<name>', optionally with 'not' before it and '== <value>' or '!= <value>' after it"


@dataclass(frozen=True)
class StepCondition:
    """A parsed ``when:``; ``holds(params)`` says whether the step runs."""

    text: str
    param: str
    negated: bool = False
    operator: str | None = None  # "==" or "!="; None: the parameter's truth
    value: Any = None

    @classmethod
    def parse(cls, text: str) -> StepCondition:
        """ValueError naming what is wrong, for anything outside the grammar."""
        found = _CONDITION.match(text)
        if found is None:
            raise ValueError(f"{text!r} is not a condition; write {FORM}")
        value = None
        if found["op"] is not None:
            try:
                value = yaml.safe_load(found["value"])
            except yaml.YAMLError as exc:
                raise ValueError(f"{found['value']!r} is not a value (a string, number, true, false or null)") from exc
            if isinstance(value, list | dict) or not _plain(value):
                raise ValueError(f"{found['value']!r}: compare with one string, number, true, false or null")
        return cls(text.strip(), found["name"], found["not"] is not None, found["op"], value)

    def holds(self, params: dict[str, Any]) -> bool:
        """Whether the step runs with these (validated) parameters; a parameter not given is null."""
        given = params.get(self.param)
        if self.operator is None:
            result = bool(given)
        else:
            equal = _same(given, self.value)
            result = equal if self.operator == "==" else not equal
        return not result if self.negated else result


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _same(given: Any, value: Any) -> bool:
    # JSON has no int/float distinction (2 == 2.0) but true is not 1.
    if isinstance(given, bool) or isinstance(value, bool):
        return isinstance(given, bool) and isinstance(value, bool) and given == value
    return bool(given == value)
