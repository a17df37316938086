"""Versions of a git repository: the commits of one branch that touched the dataset's paths.

The repository is read through a bare mirror kept in the state folder, so a URL and a local path
behave the same, and a commit stays fetchable after the branch moved on (even after a force push).
Only the ``git`` command line is used.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from filelock import FileLock
from filelock import Timeout as LockTimeout

from modelrunner.data.source import FileEntry, FoundVersion, KnownVersion, OnProgress, SourceError, public_url

_COMMIT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
# Variables that would point git at another repository than the one named on the command line
# (set, for instance, when the server itself is started from a git hook).
_REPOSITORY_VARIABLES = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
)
# cat-file answers are read after each chunk of requests; a chunk this size keeps both pipes far
# below their buffer size, so neither side can block the other.
_SIZE_CHUNK = 500
_PROGRESS_EVERY = 0.2  # seconds between progress reports while reading commits


@dataclass(frozen=True)
class _Commit:
    sha: str
    time: dt.datetime
    tree: str
    subject: str


class GitSource:
    """The commits of ``branch`` that touched ``paths`` (every commit when ``paths`` is empty).

    A version is a full commit id; its files are those under ``paths`` at that commit, with paths
    relative to the repository root. ``mirror`` is the bare mirror's folder (created on first use);
    a lock file beside it serialises updates, so syncs of the same repository in several threads
    or processes are safe. Every failure raises SourceError naming the dataset and what failed.
    """

    keeps_history = True

    def __init__(
        self,
        name: str,
        repo: str,
        *,
        mirror: Path,
        branch: str = "main",
        paths: Sequence[str] = (),
        git: str = "git",
        timeout: float = 600.0,
    ) -> None:
        self.name = name
        self.repo = repo
        self.branch = branch
        self.paths = tuple(paths)
        self.mirror = mirror
        self._git = git
        self._timeout = timeout
        self._shown_repo = public_url(repo)
        self._env = {key: value for key, value in os.environ.items() if key not in _REPOSITORY_VARIABLES}
        # Never wait for a password on a terminal nobody watches; take paths literally (no globs),
        # as the file listing below does; keep git's messages in one language.
        self._env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_LITERAL_PATHSPECS": "1", "LC_ALL": "C"})

    def discover(
        self,
        known: Callable[[str], bool],
        newest: KnownVersion | None,
        *,
        walk_all: bool,
        staging: Path,
        progress: OnProgress,
    ) -> list[FoundVersion]:
        """Update the mirror, then return the unknown commits newest first (children before parents).

        Without ``walk_all`` the walk stops at the first known commit. ``newest`` and ``staging``
        are not needed: every commit stays fetchable from the mirror.
        """
        progress(None, f"fetching {self._shown_repo}")
        with self._locked():
            self._update_mirror()
        progress(None, f"listing the commits of branch {self.branch!r}")
        head = self._branch_head()
        # Commits behind the newest known one are known already: git need not list them. After a
        # force push the newest known commit may have left the branch; then the whole branch is read.
        behind = newest.version if newest and not walk_all and self._is_ancestor(newest.version, head) else None
        new: list[_Commit] = []
        for commit in self._commits(head, behind):
            if known(commit.sha):
                if not walk_all:
                    break
                continue
            new.append(commit)
        found = []
        last_report = 0.0
        with _TreeReader(self._in_mirror(), self._env, self._error) as trees:
            for number, commit in enumerate(new, start=1):
                if number == 1 or time.monotonic() - last_report >= _PROGRESS_EVERY:
                    progress((number - 1) / len(new), f"reading commit {number} of {len(new)}")
                    last_report = time.monotonic()
                files = trees.files(commit.tree, self.paths)
                found.append(FoundVersion(commit.sha, commit.time, files, summary=commit.subject))
        progress(1.0, f"{len(found)} new commit(s) in {self._shown_repo}")
        return found

    def fetch(self, version: str, destination: Path) -> None:
        """Write the files under ``paths`` at commit ``version`` into ``destination``.

        Uses the mirror when it has the commit, and updates the mirror first when it does not.
        Files are written as committed: ``.gitattributes`` export rules are not applied.
        """
        if not _COMMIT_ID.fullmatch(version):
            raise self._error(f"{version!r} is not a full commit id")
        with self._locked():
            if not self.mirror.is_dir() or not self._has_commit(version):
                self._update_mirror()
            if not self._has_commit(version):
                raise self._error(f"commit {version} not found in git repository {self._shown_repo}")
        tree = self._run(*self._in_mirror(), "rev-parse", f"{version}^{{tree}}", action="reading commit").strip()
        with _TreeReader(self._in_mirror(), self._env, self._error) as trees:
            files = trees.files(tree.decode(), self.paths)
        # git archive refuses a path that matches nothing, so name only the paths present at this commit.
        present = [p for p in self.paths if any(f.path == p or f.path.startswith(f"{p}/") for f in files)]
        if self.paths and not present:
            return
        self._extract([*self._in_mirror(), "archive", "--format=tar", version, "--", *present], destination)

    # -- the mirror ---------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.mirror.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(f"{self.mirror}.lock")
        try:
            lock.acquire(timeout=self._timeout)
        except LockTimeout as exc:
            raise self._error(f"another sync of {self._shown_repo} held its mirror for {self._timeout:.0f} s") from exc
        try:
            yield
        finally:
            lock.release()

    def _update_mirror(self) -> None:
        """Clone the mirror, or fetch into it. Call with the lock held.

        A clone goes to a temporary folder renamed into place when complete, and a failed fetch
        changes no ref, so a failure never leaves a broken mirror behind.
        """
        action = f"cannot fetch git repository {self._shown_repo}"
        if self.mirror.is_dir():
            self._run(*self._in_mirror(), "fetch", "--prune", "--force", "--quiet", "origin", action=action)
            return
        partial = self.mirror.with_name(f"{self.mirror.name}.{uuid.uuid4().hex[:8]}.partial")
        try:
            self._run(self._git, "clone", "--bare", "--quiet", "--", self.repo, str(partial), action=action)
            git_dir = [self._git, "--git-dir", str(partial)]
            # Later fetches update (and prune) every branch; unlike --mirror, this leaves out other
            # refs, such as a forge's pull-request refs, that no dataset reads.
            refspec = "+refs/heads/*:refs/heads/*"
            self._run(*git_dir, "config", "remote.origin.fetch", refspec, action="configuring the mirror")
            # Commits that left the branch must stay fetchable: no automatic garbage collection.
            self._run(*git_dir, "config", "gc.auto", "0", action="configuring the mirror")
            self._run(*git_dir, "config", "gc.pruneExpire", "never", action="configuring the mirror")
            # fetch() writes files as committed, not as `git archive` would export them.
            (partial / "info").mkdir(exist_ok=True)
            (partial / "info" / "attributes").write_text("* -export-ignore -export-subst\n")
            partial.rename(self.mirror)
        finally:
            shutil.rmtree(partial, ignore_errors=True)

    def _has_commit(self, sha: str) -> bool:
        return self._call(*self._in_mirror(), "cat-file", "-e", f"{sha}^{{commit}}").returncode == 0

    def _branch_head(self) -> str:
        done = self._call(
            *self._in_mirror(), "rev-parse", "--verify", "--quiet", f"refs/heads/{self.branch}^{{commit}}"
        )
        if done.returncode != 0:
            raise self._error(f"branch {self.branch!r} not found in git repository {self._shown_repo}")
        return done.stdout.decode().strip()

    def _is_ancestor(self, sha: str, head: str) -> bool:
        return self._call(*self._in_mirror(), "merge-base", "--is-ancestor", sha, head).returncode == 0

    def _commits(self, head: str, behind: str | None = None) -> list[_Commit]:
        """The commits from ``head`` that touched ``paths``, children before parents; without
        those reachable from ``behind``."""
        output = self._run(
            *self._in_mirror(),
            "-c",
            "log.showSignature=false",
            "log",
            "--topo-order",
            "-z",
            "--format=%H%x1f%ct%x1f%T%x1f%s",
            head,
            *([f"^{behind}"] if behind else []),
            "--",
            *self.paths,
            action=f"listing the commits of branch {self.branch!r}",
        )
        commits = []
        for record in output.split(b"\0"):
            if not record.strip():
                continue
            sha, seconds, tree, subject = record.decode("utf-8", "replace").strip("\n").split("\x1f", 3)
            commits.append(_Commit(sha, dt.datetime.fromtimestamp(int(seconds), dt.UTC), tree, subject))
        return commits

    # -- running git --------------------------------------------------------------------------

    def _in_mirror(self) -> list[str]:
        return [self._git, "--git-dir", str(self.mirror)]

    def _run(self, *command: str, action: str) -> bytes:
        """Run git; its stdout, or SourceError with ``action`` and git's own reason."""
        done = self._call(*command, action=action)
        if done.returncode != 0:
            raise self._error(f"{action}: {_first_error_line(done.stderr)}")
        return done.stdout

    def _call(self, *command: str, action: str = "running git") -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(
                command, env=self._env, stdin=subprocess.DEVNULL, capture_output=True, timeout=self._timeout
            )
        except FileNotFoundError as exc:
            raise self._error(f"{action}: git is not installed (no {self._git!r} command found)") from exc
        except subprocess.TimeoutExpired as exc:
            raise self._error(f"{action}: git gave no answer within {self._timeout:.0f} s") from exc

    def _extract(self, command: list[str], destination: Path) -> None:
        """Stream `git archive` output into ``destination``, refusing entries that would land outside it."""
        with tempfile.TemporaryFile() as errors:
            try:
                proc = subprocess.Popen(
                    command, env=self._env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors
                )
            except FileNotFoundError as exc:
                raise self._error(f"git is not installed (no {self._git!r} command found)") from exc
            failure: Exception | None = None
            with proc:
                assert proc.stdout is not None
                try:
                    with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
                        archive.extractall(destination, filter="data")
                except (tarfile.TarError, OSError) as exc:
                    failure = exc
                    proc.kill()
            if failure is None and proc.returncode == 0:
                return
            errors.seek(0)
            reason = errors.read()
            # When git failed, the archive error is only its consequence: give git's reason.
            message = _first_error_line(reason) if reason.strip() else str(failure)
            raise self._error(f"cannot write the files of the commit: {message}") from failure

    def _error(self, message: str) -> SourceError:
        return SourceError(f"dataset {self.name!r}: {message}", dataset=self.name)


class _TreeReader:
    """Lists files of trees through two long-lived `git cat-file` processes.

    Trees and blob sizes are cached by object id, so listing many commits costs one read per tree
    that changed between them rather than one process per commit.
    """

    def __init__(self, git_dir: list[str], env: dict[str, str], error: Callable[[str], SourceError]) -> None:
        self._error = error
        self._contents = self._start([*git_dir, "cat-file", "--batch"], env)
        self._checks = self._start([*git_dir, "cat-file", "--batch-check"], env)
        self._trees: dict[str, dict[str, tuple[str, str]]] = {}
        self._sizes: dict[str, int] = {}
        self._listings: dict[tuple[str, str], tuple[FileEntry, ...]] = {}

    def _start(self, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        try:
            return subprocess.Popen(
                command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
            )
        except FileNotFoundError as exc:
            raise self._error(f"git is not installed (no {command[0]!r} command found)") from exc

    def __enter__(self) -> _TreeReader:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        for proc in (self._contents, self._checks):
            if proc.stdin:
                proc.stdin.close()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()

    def files(self, tree: str, paths: Sequence[str]) -> tuple[FileEntry, ...]:
        """The files under ``paths`` (all when empty) in ``tree``, sorted by path, with sizes."""
        if not paths:
            return self._listing(tree, "")
        parts: list[tuple[FileEntry, ...]] = []
        for path in paths:
            kind, oid = "tree", tree
            for name in path.split("/"):
                entry = self._entries(oid).get(name) if kind == "tree" else None
                if entry is None:
                    kind = "missing"
                    break
                kind, oid = entry
            if kind == "tree":
                parts.append(self._listing(oid, f"{path}/"))
            elif kind == "blob":
                self._load_sizes([oid])
                parts.append((FileEntry(path, self._sizes[oid]),))
        if len(parts) == 1:
            return parts[0]
        unique = {entry.path: entry for part in parts for entry in part}  # paths may overlap
        return tuple(sorted(unique.values(), key=lambda entry: entry.path))

    def _listing(self, tree: str, prefix: str) -> tuple[FileEntry, ...]:
        """Every file below ``tree``, its path starting with ``prefix``, sorted by path.

        Listings are cached per subtree, so a commit that changed one folder re-reads only that
        folder, and unchanged folders share their entries with other commits' listings. Git keeps
        tree entries in the order of their full paths, so concatenating them needs no sort.
        """
        cached = self._listings.get((tree, prefix))
        if cached is not None:
            return cached
        entries = self._entries(tree)
        self._load_sizes([oid for kind, oid in entries.values() if kind == "blob"])
        found: list[FileEntry] = []
        for name, (kind, oid) in entries.items():
            if kind == "tree":
                found.extend(self._listing(oid, f"{prefix}{name}/"))
            elif kind == "blob":
                found.append(FileEntry(f"{prefix}{name}", self._sizes[oid]))
        listing = self._listings[(tree, prefix)] = tuple(found)
        return listing

    def _entries(self, tree: str) -> dict[str, tuple[str, str]]:
        """A tree's entries: name -> (``tree`` | ``blob`` | ``commit``, object id)."""
        cached = self._trees.get(tree)
        if cached is not None:
            return cached
        data = self._read_object(tree)
        hash_size = len(tree) // 2
        entries: dict[str, tuple[str, str]] = {}
        at = 0
        while at < len(data):
            space = data.index(b" ", at)
            nul = data.index(b"\0", space)
            mode = data[at:space]
            oid = data[nul + 1 : nul + 1 + hash_size].hex()
            kind = "tree" if mode == b"40000" else "commit" if mode == b"160000" else "blob"
            # A name that is not UTF-8 cannot be named in a dataset spec anyway; keep it readable.
            entries[data[space + 1 : nul].decode("utf-8", "replace")] = (kind, oid)
            at = nul + 1 + hash_size
        self._trees[tree] = entries
        return entries

    def _read_object(self, oid: str) -> bytes:
        stdin, stdout = self._contents.stdin, self._contents.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(f"{oid}\n".encode())
            stdin.flush()
            header = stdout.readline().split()
            if len(header) != 3:
                raise self._error(f"object {oid} missing from the git mirror")
            data = stdout.read(int(header[2]))
            stdout.read(1)  # the newline after each object
        except BrokenPipeError as exc:
            raise self._error("git cat-file stopped unexpectedly") from exc
        return data

    def _load_sizes(self, oids: list[str]) -> None:
        """Ask for the sizes of the blobs not seen yet."""
        stdin, stdout = self._checks.stdin, self._checks.stdout
        assert stdin is not None and stdout is not None
        wanted = [oid for oid in dict.fromkeys(oids) if oid not in self._sizes]
        try:
            for start in range(0, len(wanted), _SIZE_CHUNK):
                chunk = wanted[start : start + _SIZE_CHUNK]
                stdin.write("".join(f"{oid}\n" for oid in chunk).encode())
                stdin.flush()
                for oid in chunk:
                    answer = stdout.readline().split()
                    if len(answer) != 3:
                        raise self._error(f"object {oid} missing from the git mirror")
                    self._sizes[oid] = int(answer[2])
        except BrokenPipeError as exc:
            raise self._error("git cat-file stopped unexpectedly") from exc


def _first_error_line(stderr: bytes) -> str:
    """git's reason for failing: its first ``fatal:``/``error:`` line, without that prefix."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    for line in lines:
        for prefix in ("fatal: ", "error: "):
            if line.startswith(prefix):
                return _without_credentials(line.removeprefix(prefix))
    return _without_credentials(lines[0]) if lines else "git failed without a message"


def _without_credentials(text: str) -> str:
    """``text`` with the user and password of any URL in it replaced, so a token never reaches a message."""
    return re.sub(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@", r"\1***@", text)
