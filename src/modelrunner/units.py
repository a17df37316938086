"""Durations and sizes as people write them: ``2m``, ``1m 30s``, ``1d 12h``, ``1.2 MB``.

One format for the command line and the web pages. Durations use the units modelrunner.yaml takes
(``spec/duration.py`` reads back every text ``duration`` writes); sizes use SI prefixes (1 kB =
1,000 bytes), as file managers and browsers show file sizes. The API keeps seconds and bytes.
"""

from __future__ import annotations

import datetime as dt

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_SIZE_PREFIXES = ("kB", "MB", "GB", "TB", "PB")


def duration(value: float | dt.timedelta | None) -> str:
    """A span of time in its two largest units: ``0s``, ``2.4s``, ``59s``, ``1m 30s``, ``2m``,
    ``1h 5m``, ``1d``, ``1d 12h``. Under 10 s, tenths of a second are kept; from a minute on, what
    the two units leave out is dropped (``1h 2m`` for 1 h 2 min 5 s). Empty for None; negative
    spans (clocks apart) show as ``0s``."""
    if value is None:
        return ""
    seconds = value.total_seconds() if isinstance(value, dt.timedelta) else float(value)
    seconds = max(seconds, 0.0)
    tenths = round(seconds, 1)
    if tenths < 10 and not tenths.is_integer():
        return f"{tenths:.1f}s"
    whole = round(seconds)
    parts: list[tuple[int, str]] = []
    for unit, size in _UNITS:
        count, whole = divmod(whole, size)
        if count or parts:
            parts.append((count, unit))
        if len(parts) == 2:
            break
    shown = [f"{count}{unit}" for count, unit in parts if count]
    return " ".join(shown) or "0s"


def size(n_bytes: int | None) -> str:
    """A number of bytes with an SI prefix: ``0 B``, ``999 B``, ``1.0 kB``, ``1.2 MB``; empty for None."""
    if n_bytes is None:
        return ""
    if abs(n_bytes) < 1000:
        return f"{n_bytes} B"
    value = float(n_bytes)
    for prefix in _SIZE_PREFIXES:
        value /= 1000
        # 999,950 bytes would round to "1000.0 kB": the next prefix says it better.
        if abs(round(value, 1)) < 1000 or prefix == _SIZE_PREFIXES[-1]:
            return f"{value:.1f} {prefix}"
    raise AssertionError("unreachable")
