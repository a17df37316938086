"""Figures 6 and 7: a git dataset's history synced into the store, and an attempt getting its input
folder from the local cache of versions.

Both run in this process, on a Platform built from Settings that point at the figure's fresh
database (not started: no dispatcher or poller competes with the work measured). The git
repositories are written with ``git fast-import``, thousands of commits in a second or two.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import random
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from harness import Bench
from report import Figure, median, ms, secs

from modelrunner.data.source import FoundVersion
from modelrunner.data.sources import open_source
from modelrunner.platform import Platform
from modelrunner.settings import Settings
from modelrunner.spec.dataset_spec import GitDataset
from modelrunner.store import migrate
from modelrunner.store.tables import DatasetSyncRow

BRANCH = "main"
EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
# data-sync: the repository's shape. Every data commit changes one of CHANGING files under data/;
# every DOCS_EVERY-th is followed by a commit outside data/, which is not a version.
SYNC_COMMITS = 2_000
SYNC_COMMITS_QUICK = 500
CHANGING = 50
STATIC_DATA = 150  # files under data/ no commit changes after the first
OTHER = 100  # files outside data/
DOCS_EVERY = 10
SCRATCH_ROUNDS = 3  # syncs from scratch (1 with --quick)
INCREMENTAL_ROUNDS = 5
BASELINE_REPEATS = 5
LOG_ALL = ["log", "--raw", "--format=%H", BRANCH, "--", "data"]  # the baseline of a sync from scratch
# data-cache: one version of CACHE_FILES files, CACHE_BYTES in all.
CACHE_FILES, CACHE_BYTES = 200, 20_000_000
CACHE_FILES_QUICK, CACHE_BYTES_QUICK = 50, 5_000_000
FIRST_USE_ROUNDS = 5
FIRST_USE_ROUNDS_QUICK = 3
HIT_PER_ROUND = 4  # cache hits after each first use, alternated with as many baseline copies


# --- data-sync -----------------------------------------------------------------------------------


def measure_sync(bench: Bench) -> list[Figure]:
    commits = SYNC_COMMITS_QUICK if bench.quick else SYNC_COMMITS
    rounds = 1 if bench.quick else SCRATCH_ROUNDS
    root = bench.scratch / "data-sync"
    origin = GitRepo.create(root / "origin.git")
    history = _History()
    began = time.perf_counter()
    origin.fast_import(history.stream(commits))
    built = time.perf_counter() - began
    spec = {"source": "git", "repo": str(origin.path), "branch": BRANCH, "paths": ["data"]}
    log_seconds = _repeat(lambda: origin.git(*LOG_ALL), BASELINE_REPEATS)
    full, discovered = [], []
    for n in range(1, rounds + 1):
        # Each round on a new database and state folder; the last goes on with the incremental syncs.
        label = f"data-sync-{n}"
        with bench.stores.fresh(label) as url, _platform(bench.scratch / label, spec, url) as platform:
            seconds, row = _timed(lambda: platform.syncs.sync("bench", walk_all=True))
            _expect(row, commits)
            full.append(seconds)
            seconds, found = _discover_alone(spec, bench.scratch / label / "discover-alone")
            if len(found) != commits:
                raise RuntimeError(f"data-sync: discover alone found {len(found)} versions, not {commits}")
            discovered.append(seconds)
            if n == rounds:
                later = _incremental(platform, origin, history, root / "baseline-mirror.git")

    baseline = median(log_seconds)
    full_seconds, discover_seconds = median(full), median(discovered)
    added, fetched, unchanged = median(later.added), median(later.fetched), median(later.unchanged)
    history_notes = (
        f"repository: {commits:,} commits changing one of {CHANGING} files under data/ each, plus "
        f"{commits // DOCS_EVERY} commits outside data/ (not versions); {CHANGING + STATIC_DATA} files under "
        f"data/, {CHANGING + STATIC_DATA + OTHER} in all; written by git fast-import in {built:.1f} s."
    )
    return [
        Figure(
            name=f"data-sync: from scratch (walk_all), {commits:,} commits → versions (median of {rounds})",
            measured=f"{secs(full_seconds)} ({ms(full_seconds / commits)}/version)",
            baseline=f"{ms(baseline)} git log --raw -- data",
            compared=f"ratio {full_seconds / baseline:.0f}",
            target="(information)",
            met=None,
            notes=[
                history_notes,
                "measured: platform.syncs.sync(walk_all=True) on an empty store (a new database and state "
                "folder each round): cloning the bare mirror, git log, listing every version's files, and "
                f"recording the versions and their events in one transaction; rounds: "
                f"{', '.join(secs(s) for s in full)}. Baseline: `git {' '.join(LOG_ALL)}` on the origin, "
                f"median of {BASELINE_REPEATS} after one warm-up.",
                f"split: the source's discover alone (fresh mirror, no store; after each round) median "
                f"{secs(discover_seconds)}, listing {sum(len(f.files) for f in found):,} file entries; the rest, "
                f"about {secs(full_seconds - discover_seconds)}, is the store: reading the known versions, "
                "writing the version rows (each with its file list as JSON) and one event per version.",
            ],
        ),
        Figure(
            name=f"data-sync: incremental, 1 new commit (median of {INCREMENTAL_ROUNDS})",
            measured=ms(added),
            baseline=f"{ms(fetched)} git fetch + git log -1",
            compared=f"ratio {added / fetched:.1f}",
            target="(information)",
            met=None,
            notes=[
                f"measured: platform.syncs.sync() after one new commit on top of the synced history, "
                f"{INCREMENTAL_ROUNDS} rounds: {', '.join(ms(s) for s in later.added)}.",
                "baseline: in a bare mirror holding the rest, `git fetch --quiet origin` and "
                f"`git log -1 --raw --format=%H {BRANCH} -- data`, the same new commit, just before each sync.",
                f"a sync that finds nothing new (median of {INCREMENTAL_ROUNDS}): {ms(unchanged)}; one new "
                f"version costs {ms(added - unchanged)} more (ratio {added / unchanged:.2f} to the no-op sync).",
                f"of that fixed cost, `git log --topo-order -z --format=... {BRANCH} -- data` over the whole "
                "history (which GitSource runs before stopping at the first known commit) takes "
                f"{ms(median(later.listing))} on the origin (median of {BASELINE_REPEATS}); it grows with the "
                "history.",
            ],
        ),
    ]


@dataclass(frozen=True)
class _Later:
    """Seconds of the syncs after the first, and of what git needs for the same work."""

    added: list[float]  # a sync that finds one new commit
    fetched: list[float]  # git fetch + git log -1 of that commit
    unchanged: list[float]  # a sync that finds nothing new
    listing: list[float]  # the branch listing GitSource starts every sync with


def _incremental(platform: Platform, origin: GitRepo, history: _History, mirror: Path) -> _Later:
    # The cheapest way git itself learns of one new commit: a fetch into a mirror that has the
    # rest, and a look at the newest commit touching data/.
    minimal = GitRepo.clone_mirror(origin, mirror)

    def fetch_and_log() -> None:
        minimal.git("fetch", "--quiet", "origin")
        minimal.git("log", "-1", *LOG_ALL[1:])

    added, fetched, unchanged = [], [], []
    for _ in range(INCREMENTAL_ROUNDS):
        origin.fast_import(history.stream(1, continued=True))
        fetched.append(_timed(fetch_and_log)[0])
        seconds, row = _timed(lambda: platform.syncs.sync("bench"))
        _expect(row, 1)
        added.append(seconds)
    for _ in range(INCREMENTAL_ROUNDS):
        seconds, row = _timed(lambda: platform.syncs.sync("bench"))
        _expect(row, 0)
        unchanged.append(seconds)
    listing = ["log", "--topo-order", "-z", "--format=%H%x1f%ct%x1f%T%x1f%s", BRANCH, "--", "data"]
    return _Later(added, fetched, unchanged, _repeat(lambda: origin.git(*listing), BASELINE_REPEATS))


def _discover_alone(spec: dict[str, Any], state_dir: Path) -> tuple[float, list[FoundVersion]]:
    """The source's part of a sync from scratch, without the store: its seconds and what it found."""
    source = open_source("bench", GitDataset(**spec), workspace_root=state_dir, state_dir=state_dir)
    staging = state_dir / "staging"
    staging.mkdir(parents=True)
    return _timed(
        lambda: source.discover(lambda _: False, None, walk_all=True, staging=staging, progress=lambda *_: None)
    )


def _expect(row: DatasetSyncRow, added: int) -> None:
    if row.status != "succeeded" or row.added != added:
        raise RuntimeError(f"data-sync: sync {row.id} {row.status}, added {row.added} (expected {added}): {row.error}")


class _History:
    """The bench repository's commits as fast-import streams; it remembers the files' contents,
    so that later streams continue the same history."""

    def __init__(self) -> None:
        self._rng = random.Random(20261122)
        self._commits = 0  # every commit, for its time
        self._data_commits = 0
        self._rows = [40] * CHANGING  # rows in each changing file

    def stream(self, count: int, *, continued: bool = False) -> bytes:
        """``count`` data commits (the first of a new history adds every file), each changing one
        file; ``continued`` puts them on top of the branch as it is."""
        out = io.BytesIO()
        for n in range(count):
            changes: dict[str, bytes] = {}
            if self._data_commits == 0:
                changes = {_changing(i): self._table(i) for i in range(CHANGING)}
                changes |= {f"data/reference/ref-{i:03d}.csv": self._filler(2000) for i in range(STATIC_DATA)}
                changes |= {f"src/module_{i:03d}.py": self._filler(1000) for i in range(OTHER - 1)}
                changes["README.md"] = b"Benchmark data.\n"
            else:
                which = self._rng.randrange(CHANGING)
                self._rows[which] += 1
                changes[_changing(which)] = self._table(which)
            self._data_commits += 1
            self._commit(out, changes, f"data update {self._data_commits}", continued and n == 0)
            if self._data_commits % DOCS_EVERY == 0:
                readme = f"Benchmark data, revision {self._data_commits}.\n".encode()
                self._commit(out, {"README.md": readme}, "docs", False)
        return out.getvalue()

    def _commit(self, out: io.BytesIO, changes: dict[str, bytes], message: str, from_branch: bool) -> None:
        self._commits += 1
        when = int((EPOCH + dt.timedelta(minutes=self._commits)).timestamp())
        out.write(f"commit refs/heads/{BRANCH}\ncommitter Bench <bench@example.org> {when} +0000\n".encode())
        _data(out, message.encode())
        if from_branch:  # a new fast-import process starts the branch afresh unless told otherwise
            out.write(f"from refs/heads/{BRANCH}^0\n".encode())
        for path, content in changes.items():
            out.write(f"M 100644 inline {path}\n".encode())
            _data(out, content)
        out.write(b"\n")

    def _table(self, which: int) -> bytes:
        rows = "".join(
            f"2024-01-{1 + day % 28:02d},region-{which:02d},{day * 7 % 1000}\n" for day in range(self._rows[which])
        )
        return f"day,region,value\n{rows}".encode()

    def _filler(self, size: int) -> bytes:
        return (self._rng.randbytes(size // 2).hex() + "\n").encode()


def _changing(which: int) -> str:
    return f"data/regions/region-{which:02d}.csv"


def _data(out: io.BytesIO, payload: bytes) -> None:
    out.write(b"data %d\n" % len(payload))
    out.write(payload)
    out.write(b"\n")


# --- data-cache ----------------------------------------------------------------------------------


def measure_cache(bench: Bench) -> list[Figure]:
    files, size = (CACHE_FILES_QUICK, CACHE_BYTES_QUICK) if bench.quick else (CACHE_FILES, CACHE_BYTES)
    rounds = FIRST_USE_ROUNDS_QUICK if bench.quick else FIRST_USE_ROUNDS
    root = bench.scratch / "data-cache"
    origin = GitRepo.create(root / "origin.git")
    origin.fast_import(_snapshot_stream(files, size))
    spec = {"source": "git", "repo": str(origin.path), "branch": BRANCH, "paths": ["data"]}
    attempts = root / "attempts"
    with bench.stores.fresh("data-cache") as database_url, _platform(root, spec, database_url) as platform:
        # A version exists only once a sync recorded it, which leaves the mirror in place: a first
        # use fetches from the mirror, never from the origin.
        _expect(platform.syncs.sync("bench"), 1)
        version = origin.git("rev-parse", BRANCH).strip()
        cache = platform.data_cache
        counter = iter(range(1_000_000))

        def attempt() -> tuple[float, float]:
            """What an attempt does for its input: the cached folder, then a copy in its scratch folder."""
            destination = attempts / str(next(counter)) / "inputs" / "bench"
            begun = time.perf_counter()
            folder = cache.folder("bench", version)
            got = time.perf_counter()
            shutil.copytree(folder, destination)
            ended = time.perf_counter()
            shutil.rmtree(destination.parent.parent)
            return ended - begun, got - begun

        def copy_only() -> float:
            destination = attempts / str(next(counter)) / "inputs" / "bench"
            seconds = _timed(lambda: shutil.copytree(cache.folder("bench", version), destination))[0]
            shutil.rmtree(destination.parent.parent)
            return seconds

        first, fetches, hits, lookups, copies = [], [], [], [], []
        for _ in range(rounds):
            cache.drop("bench")
            total, fetch = attempt()
            first.append(total)
            fetches.append(fetch)
            for _ in range(HIT_PER_ROUND):  # alternated, so other work on the machine slows both alike
                copies.append(copy_only())
                total, lookup = attempt()
                hits.append(total)
                lookups.append(lookup)
        # What git itself needs to write that commit's files: the floor under a first use's fetch.
        extracted = [_archive_extract(origin, version, attempts / f"extract-{n}") for n in range(rounds)]
        stored = sum(p.stat().st_size for p in cache.folder("bench", version).rglob("*") if p.is_file())

    copy = median(copies)
    shape = f"{files} files, {size / 1e6:.0f} MB"
    notes = [
        f"the version: one commit of {files} files under data/ ({stored:,} bytes, hex text, so git compresses "
        "it about 2:1); an attempt's input = DataCache.folder() then shutil.copytree into its scratch folder, "
        "as execution/process.py prepares it.",
        f"first use: the cache emptied (DataCache.drop) before each of {rounds} rounds, the mirror kept "
        f"(a sync made it); the fetch alone (git archive from the mirror, written into the cache) median "
        f"{ms(median(fetches))}: {', '.join(ms(s) for s in fetches)}.",
        f"for comparison, `git archive {BRANCH} -- data | tar -x` on the origin: median {ms(median(extracted))}.",
        f"later use: DataCache.folder() alone median {ms(median(lookups)) if median(lookups) >= 1e-4 else '< 0.1 ms'}; "
        f"{len(hits)} samples, alternated with {len(copies)} baseline copies.",
    ]
    return [
        Figure(
            name=f"data-cache: first use of a version ({shape}; median of {rounds})",
            measured=ms(median(first)),
            baseline=f"{ms(copy)} shutil.copytree",
            compared=f"ratio {median(first) / copy:.1f}",
            target="(information)",
            met=None,
            notes=notes,
        ),
        Figure(
            name=f"data-cache: later use, cache hit ({shape}; median of {len(hits)})",
            measured=ms(median(hits)),
            baseline=f"{ms(copy)} shutil.copytree",
            compared=f"ratio {median(hits) / copy:.2f}",
            target="(information)",
            met=None,
        ),
    ]


def _snapshot_stream(files: int, size: int) -> bytes:
    """One commit with ``files`` files under data/ of ``size`` bytes in all, and a README outside."""
    rng = random.Random(20261122)
    out = io.BytesIO()
    out.write(
        f"commit refs/heads/{BRANCH}\ncommitter Bench <bench@example.org> {int(EPOCH.timestamp())} +0000\n".encode()
    )
    _data(out, b"snapshot")
    each = size // files
    for i in range(files):
        lines = [rng.randbytes(39).hex() for _ in range(each // 79)]
        out.write(f"M 100644 inline data/part-{i:03d}.csv\n".encode())
        _data(out, ("\n".join(lines) + "\n").encode())
    out.write(b"M 100644 inline README.md\n")
    _data(out, b"Benchmark data.\n")
    out.write(b"\n")
    return out.getvalue()


def _archive_extract(origin: GitRepo, version: str, destination: Path) -> float:
    destination.mkdir(parents=True)
    begun = time.perf_counter()
    with subprocess.Popen(
        ["git", "--git-dir", str(origin.path), "archive", "--format=tar", version, "--", "data"],
        stdout=subprocess.PIPE,
        env=origin.env,
    ) as archive:
        subprocess.run(["tar", "-x", "-C", str(destination)], stdin=archive.stdout, check=True)
    seconds = time.perf_counter() - begun
    if archive.returncode != 0:
        raise RuntimeError(f"data-cache: git archive ended with status {archive.returncode}")
    shutil.rmtree(destination)
    return seconds


# --- shared --------------------------------------------------------------------------------------


class GitRepo:
    """A bare repository, cut off from any user or system git configuration."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.env = {
            **{key: value for key, value in os.environ.items() if not key.startswith("GIT_")},
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
        }

    @classmethod
    def create(cls, path: Path) -> GitRepo:
        path.mkdir(parents=True)
        repo = cls(path)
        repo.git("init", "--quiet", "--bare", "--initial-branch", BRANCH)
        return repo

    @classmethod
    def clone_mirror(cls, origin: GitRepo, path: Path) -> GitRepo:
        """A bare clone whose fetches update its branches, as the platform's mirror is set up."""
        origin.git("clone", "--bare", "--quiet", "--", str(origin.path), str(path))
        repo = cls(path)
        repo.git("config", "remote.origin.fetch", "+refs/heads/*:refs/heads/*")
        return repo

    def git(self, *args: str, stdin: bytes | None = None) -> str:
        """Run git on this repository; its stdout. Raises CalledProcessError on failure."""
        done = subprocess.run(
            ["git", "--git-dir", str(self.path), *args], input=stdin, env=self.env, capture_output=True, check=True
        )
        return done.stdout.decode()

    def fast_import(self, stream: bytes) -> None:
        self.git("fast-import", "--quiet", stdin=stream)


@contextmanager
def _platform(root: Path, dataset: dict[str, Any], database_url: str) -> Iterator[Platform]:
    """A platform whose workspace declares ``dataset`` as ``bench``, on ``database_url``, migrated."""
    workspace = root / "workspace"
    workspace.mkdir(parents=True)
    spec = {"name": "bench-datasets", "datasets": {"bench": dataset}}
    (workspace / "modelrunner.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    settings = Settings(workspace=workspace, data_dir=root / "state", database_url=database_url, local_slots=1)
    platform = Platform(settings)
    try:
        migrate.upgrade(platform.database)
        yield platform
    finally:
        platform.stop()


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    begun = time.perf_counter()
    result = call()
    return time.perf_counter() - begun, result


def _repeat(call: Callable[[], Any], repeats: int) -> list[float]:
    call()  # warm-up: the repository's files in the page cache
    return [_timed(call)[0] for _ in range(repeats)]
