"""The integers a caller hands in that reach the store: row ids, and positions in a sequence.

Both stores keep ids as signed 64-bit integers (BIGINT on PostgreSQL, INTEGER on SQLite), and
their drivers fail (an overflow, not a miss) on a number outside that range. Every route, form and
command takes such a number through these types, so a made-up id is a 404 and an out-of-range one
a 422 naming the parameter, never a 500.
"""

from __future__ import annotations

from typing import Annotated

from annotated_types import Ge, Le

INT64_MAX = 2**63 - 1

RowId = Annotated[int, Ge(1), Le(INT64_MAX)]
"""The id of a stored row: a run, attempt, event, delivery, subscription, sync, token or user."""

Position = Annotated[int, Ge(0), Le(INT64_MAX)]
"""An offset or an "after this id" cursor: 0 is the start."""


def fits(value: int) -> bool:
    """Whether ``value`` can be looked up as a row id (a larger one names no row)."""
    return 0 <= value <= INT64_MAX
