"""When a cron expression read in a time zone fires, around daylight-saving changes: compared,
minute by minute, with the rule users are told (a skipped wall time fires once when the gap ends;
a repeated wall time fires once, at its first occurrence)."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from croniter import croniter

from modelrunner.engine.cron_ticks import CronTicks

UTC = dt.UTC
MINUTE = dt.timedelta(minutes=1)
CRONS = ["30 2 * * *", "30 1 * * *", "*/20 * * * *", "0 * * * *", "59 1 * * *", "15 0-3 * * *"]
# (zone, a day with a change of offset): spring and autumn, a whole hour and half an hour.
CHANGES = [
    ("America/New_York", dt.datetime(2024, 3, 10, tzinfo=UTC)),
    ("America/New_York", dt.datetime(2024, 11, 3, tzinfo=UTC)),
    ("Europe/Berlin", dt.datetime(2024, 3, 31, tzinfo=UTC)),
    ("Europe/Berlin", dt.datetime(2024, 10, 27, tzinfo=UTC)),
    ("Australia/Lord_Howe", dt.datetime(2024, 4, 6, 12, tzinfo=UTC)),
    ("Australia/Lord_Howe", dt.datetime(2024, 10, 5, 12, tzinfo=UTC)),
]


def wall_ticks(cron: str, since: dt.datetime, end: dt.datetime) -> set[dt.datetime]:
    """The naive wall-clock times the cron names, from ``since`` to a day past ``end``."""
    walls = croniter(cron, since - MINUTE)
    found: set[dt.datetime] = set()
    while not found or max(found) < end.replace(tzinfo=None) + dt.timedelta(days=1):
        found.add(walls.get_next(dt.datetime))
    return found


def expected_ticks(cron: str, zone_name: str, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """Every UTC minute in [start, end] at which the stated rule says the cron fires."""
    zone = zoneinfo.ZoneInfo(zone_name)
    matching = wall_ticks(cron, start.astimezone(zone).replace(tzinfo=None) - dt.timedelta(hours=3), end)
    found = []
    moment = start
    while moment <= end:
        local = moment.astimezone(zone)
        wall = local.replace(tzinfo=None)
        first_occurrence = wall.replace(tzinfo=zone, fold=0).astimezone(UTC) == moment
        fires = first_occurrence and wall in matching
        before = (moment - MINUTE).astimezone(zone)
        jump = local.utcoffset() - before.utcoffset()  # type: ignore[operator]
        if jump > dt.timedelta(0):  # the clock just sprang forward: the skipped walls fire now
            skipped = wall - jump
            while skipped < wall and not fires:
                fires = skipped in matching
                skipped += MINUTE
        if fires:
            found.append(moment)
        moment += MINUTE
    return found


@pytest.mark.parametrize(("zone", "day"), CHANGES, ids=[f"{z}-{d:%m-%d}" for z, d in CHANGES])
def test_ticks_follow_the_wall_clock_across_a_change_of_offset(zone: str, day: dt.datetime) -> None:
    start, end = day - dt.timedelta(hours=2), day + dt.timedelta(hours=22)
    for cron in CRONS:
        ticks = CronTicks(cron, zone)
        found = []
        moment = ticks.next_after(start - MINUTE)
        while moment is not None and moment <= end:
            found.append(moment)
            moment = ticks.next_after(moment)
        expected = expected_ticks(cron, zone, start, end)
        assert found == expected, cron
        for probe in (start + dt.timedelta(minutes=7 * i) for i in range(200)):
            newest = max((tick for tick in expected if tick <= probe), default=None)
            if newest is not None:
                assert ticks.latest_until(probe) == newest, (cron, probe)


def test_an_expression_that_never_matches_has_no_next_tick() -> None:
    assert CronTicks("0 0 30 2 *", "UTC").next_after(dt.datetime(2024, 1, 1, tzinfo=UTC)) is None
