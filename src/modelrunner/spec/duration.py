"""Durations as users write them: seconds, or numbers with units (``90s``, ``30m``, ``2h``,
``1d``, ``1m 30s``, ``1d 12h``), as ``units.duration`` shows them."""

from __future__ import annotations

import re
from typing import Any

_PART = r"(\d+(?:\.\d+)?)\s*([smhd])"
_DURATION = re.compile(rf"^\s*(?:{_PART}\s*)+$")
_SECONDS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
HINT = "expected seconds or a duration such as '90s', '30m', '2h', '1d', '1m 30s'"


def parse_duration(value: Any) -> float:
    """Seconds; raises ValueError (with a hint) for anything else. Numbers pass through."""
    if isinstance(value, bool):
        raise ValueError(HINT)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        plain = _SECONDS.match(value)
        if plain:
            return float(plain.group(1))
        if _DURATION.match(value):
            return sum(float(number) * _UNITS[unit] for number, unit in re.findall(_PART, value))
    raise ValueError(HINT)
