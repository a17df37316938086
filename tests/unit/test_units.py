"""Durations and sizes as the command line and the pages show them, and durations read back."""

from __future__ import annotations

import datetime as dt

import pytest

from modelrunner.spec.duration import parse_duration
from modelrunner.units import duration, size

pytestmark = pytest.mark.store_free


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (0.04, "0s"),
        (0.4, "0.4s"),
        (2.44, "2.4s"),
        (9.96, "10s"),  # tenths only under 10 s
        (10.4, "10s"),
        (59, "59s"),
        (59.96, "1m"),
        (60, "1m"),
        (90, "1m 30s"),
        (120, "2m"),
        (1800, "30m"),
        (3599, "59m 59s"),
        (3600, "1h"),
        (3725, "1h 2m"),  # two units: the 5 s are left out
        (5400, "1h 30m"),
        (86399, "23h 59m"),
        (86400, "1d"),
        (129600, "1d 12h"),
        (86700, "1d"),  # 1 d 0 h 5 min: the hours are the second unit
        (604800, "7d"),
        (-3, "0s"),  # clocks a little apart
    ],
)
def test_durations(seconds: float, shown: str) -> None:
    assert duration(seconds) == shown


def test_a_duration_may_be_a_timedelta_or_missing() -> None:
    assert duration(dt.timedelta(minutes=2, seconds=5)) == "2m 5s"
    assert duration(None) == ""


@pytest.mark.parametrize("seconds", [1, 45, 90, 120, 1800, 3600, 5400, 86400, 129600, 604800, 0.5])
def test_a_shown_duration_reads_back_as_the_same_seconds(seconds: float) -> None:
    assert parse_duration(duration(seconds)) == seconds


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1m 30s", 90), ("1d12h", 129600), (" 2h 5m ", 7500), ("1.5h", 5400), ("45", 45), ("0.5", 0.5)],
)
def test_compound_durations_are_read(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "1 x", "1m30", "1m 30s 1", "30 min", "-1m", "1e3s"])
def test_other_texts_are_not_durations(text: str) -> None:
    with pytest.raises(ValueError, match="expected seconds or a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("n_bytes", "shown"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),  # SI: a kilobyte is 1,000 bytes
        (1023, "1.0 kB"),
        (1024, "1.0 kB"),
        (2060, "2.1 kB"),
        (999_949, "999.9 kB"),
        (999_950, "1.0 MB"),  # not "1000.0 kB"
        (1_200_000, "1.2 MB"),
        (2 * 1024 * 1024, "2.1 MB"),
        (10**12, "1.0 TB"),
        (10**18, "1000.0 PB"),
    ],
)
def test_sizes(n_bytes: int, shown: str) -> None:
    assert size(n_bytes) == shown


def test_a_missing_size_is_empty() -> None:
    assert size(None) == ""
