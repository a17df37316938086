"""Create the git repository ``case-data/`` that the ``cases`` dataset of this workspace reads.

    python setup_data.py             create case-data/ (does nothing if it exists)
    python setup_data.py --new-day   commit one more day of data, as new data arriving
    python setup_data.py --reset     delete case-data/ and create it again

The repository holds ``cases.csv`` (date, region, new_cases): synthetic daily case counts of three
regions, each on its own epidemic wave, with fewer reports at weekends and some noise. Its history
is a first commit of 32 days, then a commit per week adding 7 days (60 days in all), and one commit
that only edits README.md, which is not a new data version since the dataset watches cases.csv
only. Commits carry fixed names and dates, so every run creates the same commit ids. The counts
of a day depend only on the region and the date, so ``--new-day`` continues the same curves.

Only the standard library and the ``git`` command are used.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import math
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent / "case-data"
CASES_FILE = "cases.csv"
COLUMNS = ["date", "region", "new_cases"]
FIRST_DAY = dt.date(2025, 3, 3)
INITIAL_DAYS = 32
DAYS_PER_UPDATE = 7
UPDATES = 4  # 32 + 4 x 7 = 60 days of history
DOCS_COMMIT_AFTER_UPDATE = 2  # the README-only commit comes after this many weekly updates
COMMIT_HOUR = 9  # data for a day is committed the next morning, UTC
WEEKEND_REPORTING = 0.7  # share of the cases of a Saturday or Sunday reported on that day
NOISE_SHAPE = 40.0  # gamma noise: a coefficient of variation of 1/sqrt(40), about 16%
AUTHOR = ("Case data bot", "case-data@example.org")

README = """\
# Case data (synthetic)

`cases.csv` holds the daily number of new cases reported in each region:

| column | meaning |
| --- | --- |
| date | the day the cases were reported (YYYY-MM-DD) |
| region | north, central or south |
| new_cases | cases reported that day |

The numbers are made up by `setup_data.py` of the modelrunner `casecounts` example.
"""

README_REVISED = (
    README
    + """
Weekends have fewer reports than weekdays: offices report about 70% of weekend cases on the day
and the rest is never back-filled.
"""
)


@dataclass(frozen=True)
class Wave:
    """A region's expected daily cases: a baseline plus one bell-shaped wave.

    The logarithm of a bell curve is a parabola, so the growth rate falls steadily through the
    wave, as it does when immunity builds or behaviour changes.
    """

    baseline: float
    peak: float
    peak_day: float  # days after FIRST_DAY; may lie beyond the data
    width: float  # standard deviation of the bell, in days

    def expected(self, day: int) -> float:
        return self.baseline + self.peak * math.exp(-0.5 * ((day - self.peak_day) / self.width) ** 2)


# One region still growing at the end of the history, one past its peak, one near its baseline.
REGIONS = {
    "north": Wave(baseline=20, peak=900, peak_day=78, width=16),
    "central": Wave(baseline=30, peak=600, peak_day=38, width=11),
    "south": Wave(baseline=15, peak=300, peak_day=18, width=12),
}


def new_cases(region: str, date: dt.date) -> int:
    """The reported cases of ``region`` on ``date``: always the same number for the same pair."""
    # A string seed is hashed with SHA-512, so this is stable across processes and platforms.
    rng = random.Random(f"{region}/{date.isoformat()}")
    expected = REGIONS[region].expected((date - FIRST_DAY).days)
    if date.weekday() >= 5:
        expected *= WEEKEND_REPORTING
    return round(expected * rng.gammavariate(NOISE_SHAPE, 1 / NOISE_SHAPE))


def rows_for(dates: list[dt.date]) -> list[list[str]]:
    return [[date.isoformat(), region, str(new_cases(region, date))] for date in dates for region in REGIONS]


def csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")  # "\n" on every platform: same bytes, same commits
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    return buffer.getvalue()


def git(*args: str, date: dt.datetime | None = None) -> str:
    """Run git in case-data/ with a fixed identity; ``date`` fixes the commit dates too."""
    # Neither the user's git configuration (signing, hooks, templates) nor GIT_* variables (an
    # author, a date, another repository when run from a git hook) may change the commits.
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env.update(GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
    if date is not None:
        stamp = date.isoformat()
        env.update(GIT_AUTHOR_DATE=stamp, GIT_COMMITTER_DATE=stamp)
    identity = ["-c", f"user.name={AUTHOR[0]}", "-c", f"user.email={AUTHOR[1]}", "-c", "commit.gpgsign=false"]
    try:
        done = subprocess.run(["git", *identity, *args], cwd=REPO, env=env, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        sys.exit("setup_data.py: the `git` command is not installed; install git and try again")
    if done.returncode != 0:
        sys.exit(f"setup_data.py: git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def commit(message: str, files: dict[str, str], date: dt.datetime | None) -> str:
    """Write ``files`` into case-data/ and commit them; return the short commit id."""
    for name, text in files.items():
        (REPO / name).write_text(text, encoding="utf-8", newline="\n")
    git("add", "--", *files)
    git("commit", "--quiet", "--no-verify", "-m", message, date=date)
    return git("rev-parse", "--short", "HEAD").strip()


def shown(path: Path) -> str:
    """``path`` relative to the current folder when it is below it, as the user would type it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def morning_after(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(COMMIT_HOUR), tzinfo=dt.UTC)


def create() -> None:
    """Create case-data/ with its whole history."""
    REPO.mkdir(parents=True)
    git("init", "--quiet", "--initial-branch=main")
    dates = [FIRST_DAY + dt.timedelta(days=n) for n in range(INITIAL_DAYS)]
    commit(
        f"Cases up to {dates[-1]}",
        {CASES_FILE: csv_text(rows_for(dates)), "README.md": README},
        morning_after(dates[-1]),
    )
    print(f"  {dates[0]} to {dates[-1]}: first {INITIAL_DAYS} days")
    for update in range(1, UPDATES + 1):
        start = dates[-1] + dt.timedelta(days=1)
        dates += [start + dt.timedelta(days=n) for n in range(DAYS_PER_UPDATE)]
        commit(f"Cases up to {dates[-1]}", {CASES_FILE: csv_text(rows_for(dates))}, morning_after(dates[-1]))
        print(f"  {start} to {dates[-1]}: {DAYS_PER_UPDATE} more days")
        if update == DOCS_COMMIT_AFTER_UPDATE:
            # A commit the dataset must ignore: it does not touch cases.csv.
            docs_time = morning_after(dates[-1]) + dt.timedelta(hours=3)
            commit("README: explain the weekend dip", {"README.md": README_REVISED}, docs_time)
            print("  README.md only (not a data version)")
    regions = ", ".join(REGIONS)
    print(
        f"Created {shown(REPO)} with {UPDATES + 2} commits; {UPDATES + 1} of them change {CASES_FILE}: "
        f"{len(dates)} days ({dates[0]} to {dates[-1]}) for {len(REGIONS)} regions ({regions})."
    )


def add_day() -> None:
    """Commit the day after the last one in cases.csv, dated now."""
    path = REPO / CASES_FILE
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    if not rows:
        sys.exit(f"setup_data.py: {shown(path)} has no data rows; recreate it with --reset")
    day = max(dt.date.fromisoformat(row[0]) for row in rows) + dt.timedelta(days=1)
    added = rows_for([day])
    sha = commit(f"Cases for {day}", {CASES_FILE: csv_text(rows + added)}, date=None)
    counts = ", ".join(f"{region} {cases}" for _, region, cases in added)
    print(f"Added {day} ({counts}) to {shown(path)} as commit {sha}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--new-day", action="store_true", help="commit one more day of data (dated now)")
    action.add_argument("--reset", action="store_true", help="delete case-data/ and create it again")
    args = parser.parse_args()

    if args.reset and REPO.exists():
        shutil.rmtree(REPO)
        print(f"Deleted {shown(REPO)}.")
    if args.new_day:
        if not (REPO / ".git").is_dir():
            sys.exit(f"setup_data.py: {shown(REPO)} does not exist yet; run `python {Path(__file__).name}` first")
        add_day()
    elif REPO.exists():
        print(f"{shown(REPO)} exists already: nothing to do (--new-day adds a day of data, --reset starts over).")
    else:
        create()


if __name__ == "__main__":
    main()
