"""A cron expression read in a time zone: the instants (UTC) of its ticks, across daylight saving.

Cron fields name wall-clock times. Two days a year the wall clock of a zone with daylight saving
is not a plain line, and these rules say what a tick then means:

- a wall-clock time skipped by a spring-forward (02:30 in America/New_York on the day clocks go
  from 02:00 to 03:00) happens once, at the moment the gap ends (03:00 local); several ticks in the
  gap collapse into that one;
- a wall-clock time repeated by a fall-back (01:30 on the day clocks go from 02:00 back to 01:00)
  happens once, at its first occurrence; the repeated hour has no ticks of its own.

So a schedule that fires "every day at 02:30" fires exactly once every day, and the ticks in
UTC always move forward.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

from croniter import croniter
from croniter.croniter import CroniterBadDateError

# Larger than any offset change a zone has made (2 hours in practice): how far past the wall time
# of an instant a tick may lie and still map to that instant or before it.
_MAX_SHIFT = dt.timedelta(hours=3)


class CronTicks:
    """The ticks of ``cron`` (five fields) read in ``timezone`` (an IANA name)."""

    def __init__(self, cron: str, timezone: str) -> None:
        self.cron = cron
        self.zone = zoneinfo.ZoneInfo(timezone)

    def next_after(self, instant: dt.datetime) -> dt.datetime | None:
        """The first tick strictly after ``instant`` (aware), in UTC; None if the expression never
        matches (e.g. 30 February)."""
        # Walls up to the instant's own wall time map to the instant or before it (the mapping only
        # moves forward), so the first later wall whose instant is later is the next tick.
        walls = croniter(self.cron, self._wall(instant))
        while True:
            try:
                wall = walls.get_next(dt.datetime)
            except CroniterBadDateError:
                return None
            at = self.instant_of(wall)
            if at > instant:
                return at

    def latest_until(self, instant: dt.datetime) -> dt.datetime | None:
        """The newest tick at or before ``instant`` (aware), in UTC; None if there is none."""
        walls = croniter(self.cron, self._wall(instant) + _MAX_SHIFT)
        while True:
            try:
                wall = walls.get_prev(dt.datetime)
            except CroniterBadDateError:
                return None
            at = self.instant_of(wall)
            if at <= instant:
                return at

    def local(self, instant: dt.datetime) -> dt.datetime:
        """``instant`` on the zone's wall clock (aware)."""
        return instant.astimezone(self.zone)

    def instant_of(self, wall: dt.datetime) -> dt.datetime:
        """The UTC instant of a naive wall-clock time by the rules of the module docstring."""
        first = wall.replace(tzinfo=self.zone, fold=0).astimezone(dt.UTC)
        if self._wall(first) == wall:
            return first  # an ordinary time, or the first occurrence of a repeated one
        return self._gap_end(wall)

    def _wall(self, instant: dt.datetime) -> dt.datetime:
        return instant.astimezone(self.zone).replace(tzinfo=None, fold=0)

    def _gap_end(self, wall: dt.datetime) -> dt.datetime:
        """The instant a spring-forward gap holding ``wall`` ends: the transition itself."""
        before = wall.replace(tzinfo=self.zone, fold=0).utcoffset()
        after = wall.replace(tzinfo=self.zone, fold=1).utcoffset()
        assert before is not None and after is not None
        # The transition lies in (wall - after, wall - before]; zoneinfo does not expose it, so
        # find the first second on the new offset by bisection.
        low = (wall - after).replace(tzinfo=dt.UTC)
        high = (wall - before).replace(tzinfo=dt.UTC)
        while high - low > dt.timedelta(seconds=1):
            middle = low + (high - low) / 2
            middle = middle.replace(microsecond=0)
            if middle.astimezone(self.zone).utcoffset() == after:
                high = middle
            else:
                low = middle
        return high
