"""Durations as users write them: seconds, or a number with a unit (``90s``, ``30m``, ``2h``, ``1d``)."""

from __future__ import annotations

import re
from typing import Any

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
HINT = "expected seconds or a duration such as '90s', '30m', '2h', '1d'"


def parse_duration(value: Any) -> float:
    """Seconds; raises ValueError (with a hint) for anything else. Numbers pass through."""
    if isinstance(value, bool):
        raise ValueError(HINT)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNITS[match.group(2)]
    raise ValueError(HINT)
