"""How a submit may use the cache (a module of its own so the CLI can import it cheaply)."""

from __future__ import annotations

from enum import StrEnum


class CacheMode(StrEnum):
    USE = "use"  # a cached result if there is one, else compute
    REFRESH = "refresh"  # compute again even if cached (an identical run in flight is joined)
    ONLY = "only"  # a cached result or a Conflict; never compute
