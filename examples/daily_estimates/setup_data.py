"""Create the git repository ``data/cases-repo/`` that the ``cases`` dataset of this workspace reads.

    python setup_data.py             create data/cases-repo/ (does nothing if it exists)
    python setup_data.py --new-day   commit one more day of data, as new data arriving
    python setup_data.py --reset     delete data/cases-repo/ and create it again

The repository holds one folder per region, each with ``cases.csv`` (date, new_cases): synthetic
daily case counts of four regions, each on its own epidemic wave, with fewer reports at weekends
and some noise. The pipeline makes one estimate per top-level folder, so the repository holds
nothing else (no README): a file at the top would be taken for a region. Its history is a first
commit of 28 days, then a commit per week adding 7 days (42 days in all). Commits carry fixed names
and dates, so every run creates the same commit ids. The counts of a day depend only on the region
and the date, so ``--new-day`` continues the same curves.

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

REPO = Path(__file__).resolve().parent / "data" / "cases-repo"
CASES_FILE = "cases.csv"
COLUMNS = ["date", "new_cases"]
FIRST_DAY = dt.date(2025, 6, 2)  # a Monday
INITIAL_DAYS = 28
DAYS_PER_UPDATE = 7
UPDATES = 2  # 28 + 2 x 7 = 42 days of history, in 3 commits
COMMIT_HOUR = 9  # data for a day is committed the next morning, UTC
WEEKEND_REPORTING = 0.7  # share of the cases of a Saturday or Sunday reported on that day
NOISE_SHAPE = 40.0  # gamma noise: a coefficient of variation of 1/sqrt(40), about 16%
AUTHOR = ("Case data bot", "case-data@example.org")


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


# At the end of the history: north growing, central past its peak, south flat near its baseline,
# west just taking off.
REGIONS = {
    "north": Wave(baseline=20, peak=800, peak_day=58, width=14),
    "central": Wave(baseline=30, peak=600, peak_day=24, width=9),
    "south": Wave(baseline=60, peak=40, peak_day=5, width=6),
    "west": Wave(baseline=10, peak=500, peak_day=70, width=12),
}


def new_cases(region: str, date: dt.date) -> int:
    """The reported cases of ``region`` on ``date``: always the same number for the same pair."""
    # A string seed is hashed with SHA-512, so this is stable across processes and platforms.
    rng = random.Random(f"{region}/{date.isoformat()}")
    expected = REGIONS[region].expected((date - FIRST_DAY).days)
    if date.weekday() >= 5:
        expected *= WEEKEND_REPORTING
    return round(expected * rng.gammavariate(NOISE_SHAPE, 1 / NOISE_SHAPE))


def csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")  # "\n" on every platform: same bytes, same commits
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    return buffer.getvalue()


def files_for(dates: list[dt.date]) -> dict[str, str]:
    """``<region>/cases.csv`` of every region, for ``dates``."""
    return {
        f"{region}/{CASES_FILE}": csv_text([[date.isoformat(), str(new_cases(region, date))] for date in dates])
        for region in REGIONS
    }


def git(*args: str, date: dt.datetime | None = None) -> str:
    """Run git in the repository with a fixed identity; ``date`` fixes the commit dates too."""
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
    """Write ``files`` into the repository and commit them; return the short commit id."""
    for name, text in files.items():
        path = REPO / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="")
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
    """Create the repository with its whole history."""
    REPO.mkdir(parents=True)
    git("init", "--quiet", "--initial-branch=main")
    dates = [FIRST_DAY + dt.timedelta(days=n) for n in range(INITIAL_DAYS)]
    commit(f"Cases up to {dates[-1]}", files_for(dates), morning_after(dates[-1]))
    print(f"  {dates[0]} to {dates[-1]}: first {INITIAL_DAYS} days")
    for _ in range(UPDATES):
        start = dates[-1] + dt.timedelta(days=1)
        dates += [start + dt.timedelta(days=n) for n in range(DAYS_PER_UPDATE)]
        commit(f"Cases up to {dates[-1]}", files_for(dates), morning_after(dates[-1]))
        print(f"  {start} to {dates[-1]}: {DAYS_PER_UPDATE} more days")
    print(
        f"Created {shown(REPO)} with {UPDATES + 1} commits: {len(dates)} days ({dates[0]} to {dates[-1]}) "
        f"for {len(REGIONS)} regions ({', '.join(REGIONS)}), one folder each."
    )


def add_day() -> None:
    """Append the day after the last one in the data to every region's file; commit it, dated now."""
    existing: dict[str, list[list[str]]] = {}
    for region in REGIONS:
        path = REPO / region / CASES_FILE
        with path.open(encoding="utf-8", newline="") as handle:
            existing[region] = list(csv.reader(handle))[1:]
        if not existing[region]:
            sys.exit(f"setup_data.py: {shown(path)} has no data rows; recreate the repository with --reset")
    day = max(dt.date.fromisoformat(rows[-1][0]) for rows in existing.values()) + dt.timedelta(days=1)
    files = {
        f"{region}/{CASES_FILE}": csv_text([*rows, [day.isoformat(), str(new_cases(region, day))]])
        for region, rows in existing.items()
    }
    sha = commit(f"Cases for {day}", files, date=None)
    counts = ", ".join(f"{region} {new_cases(region, day)}" for region in REGIONS)
    print(f"Added {day} ({counts}) to {shown(REPO)} as commit {sha}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--new-day", action="store_true", help="commit one more day of data (dated now)")
    action.add_argument("--reset", action="store_true", help="delete the repository and create it again")
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
