"""A model's own environment (``environment:`` in model.yaml), built once per content hash and
reused by every attempt, run and model version that names the same file.

Each environment lives in ``<root>/<hash>``, a symbolic link to the folder it was built in
(``<root>/builds/<hash>-<random>``). The link is made, atomically, only when the build has
succeeded, and the build folder never moves (conda and venv prefixes are written into their
files): a build killed half-way leaves only a folder no link points to, which the next build of
that hash removes. A file lock per hash lets one attempt build while the others wait for it, on
this machine and on any that share the folder.

The hash covers the environment file's name and bytes and what else decides what gets built:
the tool's version, and for Python the interpreter's version and where modelrunner's package
is (linked into the environment so that ``from modelrunner import job`` works in it). The model
version covers the same file, since it is one of the model's files: a changed file is a new
version and a new environment, while versions that share the file share the environment.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import filelock

from modelrunner.errors import ModelrunnerError
from modelrunner.execution.confinement import ModelUser, check_reachable, model_environment
from modelrunner.spec.environment_spec import EnvironmentKind, environment_kind, find_tool, missing_tool_message
from modelrunner.spec.model_version import content_hash

# modelrunner's own package folder, which a Python environment links to.
_PACKAGE = Path(__file__).resolve().parent.parent
# The environments' folder in a server's data folder (--data-dir).
ENVIRONMENTS_FOLDER = "environments"
# Part of every hash: a change to how environments are built here builds them anew.
_LAYOUT = "1"
_LAST_LINES = 8  # of a failed build's output, in the attempt's error
_LOCK_POLL_SECONDS = 0.5
_STATE_FILE = "built.json"  # in a build folder, next to the environment itself
_PREFIX = "env"  # the environment in its build folder
# A line of a requirements file (or a YAML list item) naming another file or a folder, or a file
# URL, an R local remote, a renv local source, a pyproject path source.
_FILE_REFERENCE = re.compile(
    r"^\s*(?:-\s+)?(?:-r\b|--requirement\b|-c\b|--constraint\b|-e\b|--editable\b|\.\.?(?:/|$)|/)"
    r"|file:|local::|\"Source\":\s*\"Local\"|\bpath\s*=",
    re.MULTILINE,
)
_NETWORK_VARIABLES = frozenset(
    {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE"}
)


@dataclass(frozen=True)
class Environment:
    """A built environment: what a model's command and variables become inside it."""

    kind: EnvironmentKind
    folder: Path  # the environment itself (its prefix: bin/, lib/ or library/), links resolved
    file: str

    @property
    def python(self) -> str | None:
        """The interpreter that ``python`` and ``python3`` mean in this environment (None for R)."""
        return None if self.kind is EnvironmentKind.R else str(self.folder / "bin" / "python")

    def variables(self, path: str) -> dict[str, str]:
        """The variables a model runs with in this environment; ``path`` is its PATH outside it."""
        if self.kind is EnvironmentKind.R:
            return {"R_LIBS": str(self.folder / "library")}
        named = "VIRTUAL_ENV" if self.kind is EnvironmentKind.PYTHON else "CONDA_PREFIX"
        return {named: str(self.folder), "PATH": os.pathsep.join([str(self.folder / "bin"), path])}


class EnvironmentStopped(ModelrunnerError):
    """The attempt was stopped while its environment was built or waited for."""


class Environments:
    """The environments of one machine (or of every machine sharing ``root``)."""

    def __init__(self, root: Path, user: ModelUser | None = None) -> None:
        """``root``: where they are kept; ``user``: who models run as (who builds them too, as a
        build runs the code of the packages it installs; then this process takes them over, so
        no model can change an environment others use). None: this process's user."""
        self.root = root
        self._user = user

    def prepare(
        self,
        model_dir: Path,
        environment_file: str,
        runner_environment: Mapping[str, str],
        passed_variables: Iterable[str],
        log: IO[bytes],
        stopped: Callable[[], bool] = lambda: False,
    ) -> Environment:
        """The environment ``environment_file`` (of ``model_dir``) describes, built now unless
        it was before; the build's output goes to ``log``. ModelrunnerError naming the file when
        it cannot be built (with the build's last lines); EnvironmentStopped when ``stopped()``
        turns true meanwhile (the build is killed and leaves nothing behind)."""
        kind = environment_kind(environment_file)
        if kind is None:
            raise ModelrunnerError(f"environment: {environment_file!r} is not an environment file modelrunner builds")
        source = model_dir / environment_file
        if not source.is_file():
            raise ModelrunnerError(f"environment: {environment_file!r} does not exist in the model folder")
        # A build downloads: it gets the runner's proxies and certificates, which a model does not.
        network = [name for name in runner_environment if name.upper() in _NETWORK_VARIABLES]
        variables = model_environment(runner_environment, [*passed_variables, *network], self._user, {})
        tool = find_tool(kind, variables.get("PATH", os.defpath))
        if tool is None:
            raise ModelrunnerError(f"environment: {missing_tool_message(environment_file, kind)}")
        content = source.read_bytes()
        digest = build_hash(kind, environment_file, content, tool)
        if refers_to_files(content):
            # What it refers to is part of the model version, not of the file's bytes.
            digest = build_hash(kind, environment_file, content + content_hash(model_dir).encode(), tool)
            _note(log, f"{environment_file} refers to other files of the model: its environment is built per version")
        link = self.root / digest
        if link.is_dir():
            _note(log, f"the environment {environment_file} ({digest}) is built already")
            return Environment(kind, link.resolve() / _PREFIX, environment_file)
        for folder, mode in ((self.root, 0o711), (self.root / "builds", 0o711), (self.root / "locks", 0o700)):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(mode)
        if self._user is not None:
            check_reachable(
                self._user, self.root, f"the environments folder {self.root} (MODELRUNNER_ENVIRONMENTS_DIR)"
            )
        with self._locked(digest, environment_file, log, stopped):
            if not link.is_dir():  # another attempt may have built it while this one waited
                self._build(kind, tool, digest, model_dir, environment_file, variables, log, stopped)
            else:
                _note(log, f"the environment {environment_file} ({digest}) was built meanwhile by another attempt")
        return Environment(kind, link.resolve() / _PREFIX, environment_file)

    @contextlib.contextmanager
    def _locked(
        self, digest: str, environment_file: str, log: IO[bytes], stopped: Callable[[], bool]
    ) -> Iterator[None]:
        lock = filelock.FileLock(self.root / "locks" / f"{digest}.lock")
        said = False
        while True:
            if stopped():
                raise EnvironmentStopped(f"stopped while waiting for the environment {environment_file}")
            try:
                lock.acquire(timeout=_LOCK_POLL_SECONDS)
                break
            except filelock.Timeout:
                if not said:
                    _note(log, f"waiting for another attempt that builds the environment {environment_file}")
                    said = True
        try:
            yield
        finally:
            lock.release()

    def _build(
        self,
        kind: EnvironmentKind,
        tool: str,
        digest: str,
        model_dir: Path,
        environment_file: str,
        variables: dict[str, str],
        log: IO[bytes],
        stopped: Callable[[], bool],
    ) -> None:
        builds = self.root / "builds"
        for stale in builds.glob(f"{digest}-*"):  # left by a build that was killed
            shutil.rmtree(stale, ignore_errors=True)
        build = builds / f"{digest}-{secrets.token_hex(4)}"
        build.mkdir()
        build.chmod(0o755)
        work = build / "work"  # the build's caches and temporary files
        work.mkdir(mode=0o700)
        if self._user is not None:
            os.chown(build, self._user.uid, self._user.gid)
            os.chown(work, self._user.uid, self._user.gid)
        # The package caches: shared by every build when builds run as this process's user, as
        # models do then; a build as the models' user gets its own, as a cache it shared with
        # every model could be filled by one of them with packages for others' builds.
        caches = work if self._user is not None else self.root / "cache"
        env = {**variables, "TMPDIR": str(work), **_tool_variables(kind, work, caches)}
        prefix = build / _PREFIX
        _note(log, f"building the environment {environment_file} ({digest}) in {prefix}")
        started = time.monotonic()
        try:
            for command in _steps(kind, tool, prefix, environment_file):
                self._run(command, model_dir, env, environment_file, log, stopped)
            if kind is EnvironmentKind.PYTHON:
                _add_job_helper(prefix)
            shutil.rmtree(work)
            if self._user is not None:
                _take_back(build)
            took = time.monotonic() - started
            state = {"file": environment_file, "hash": digest, "tool": tool, "seconds": round(took, 3)}
            (build / _STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
        except BaseException:
            shutil.rmtree(build, ignore_errors=True)
            raise
        temporary_link = self.root / f".{digest}-{secrets.token_hex(4)}"
        temporary_link.symlink_to(Path("builds") / build.name)
        os.replace(temporary_link, self.root / digest)  # atomic: the environment exists whole or not at all
        _note(log, f"the environment {environment_file} was built in {took:.1f}s")

    def _run(
        self,
        command: list[str],
        cwd: Path,
        env: dict[str, str],
        environment_file: str,
        log: IO[bytes],
        stopped: Callable[[], bool],
    ) -> None:
        if stopped():
            raise EnvironmentStopped(f"stopped while building the environment {environment_file}")
        shown = ("<script>" if "\n" in word else word for word in command)
        log.write(("modelrunner: $ " + " ".join(shown) + "\n").encode())
        log.flush()
        user = self._user
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the whole build is stopped with its group
            umask=0o022,  # models (another user, perhaps) read what it installs
            user=user.uid if user is not None else None,
            group=user.gid if user is not None else None,
            extra_groups=[] if user is not None else None,
        )
        last: collections.deque[str] = collections.deque(maxlen=_LAST_LINES)
        copier = threading.Thread(target=_copy_output, args=(process, log, last), daemon=True)
        copier.start()
        while True:
            try:
                status = process.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if stopped():
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                    copier.join(5)
                    raise EnvironmentStopped(f"stopped while building the environment {environment_file}") from None
        copier.join()
        if status != 0:
            said = "; ".join(line for line in last if line) or "(no output)"
            raise ModelrunnerError(
                f"the environment {environment_file} could not be built ({Path(command[0]).name} ended with exit "
                f"status {status}): {said}"
            )


def refers_to_files(content: bytes) -> bool:
    """Whether an environment file names other files (``-r base.txt``, ``-e .``, ``./pkg``,
    ``file:``, an R ``local::`` remote or a renv ``Local`` source)."""
    return _FILE_REFERENCE.search(content.decode("utf-8", "replace")) is not None


def build_hash(kind: EnvironmentKind, environment_file: str, content: bytes, tool: str) -> str:
    """The content hash of an environment: 24 hex digits over what decides what gets built."""
    described = {
        "layout": _LAYOUT,
        "kind": kind.value,
        "file": Path(environment_file).name,  # pyproject.toml and requirements.txt read differently
        "content": hashlib.sha256(content).hexdigest(),
        "tool": _tool_version(tool),
    }
    if kind is EnvironmentKind.PYTHON:
        described["python"] = f"{sys.implementation.name} {platform.python_version()} {platform.machine()}"
        described["modelrunner"] = str(_PACKAGE)  # where the environment's link to it points
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:24]


def machine_folder() -> Path:
    """Where ``modelrunner exec`` and workers keep environments on their machine:
    ``MODELRUNNER_ENVIRONMENTS_DIR``, else the user's cache folder."""
    given = os.environ.get("MODELRUNNER_ENVIRONMENTS_DIR")
    if given:
        return Path(given)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "modelrunner" / "environments"


@functools.cache
def _tool_version(tool: str) -> str:
    try:
        done = subprocess.run([tool, "--version"], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelrunnerError(f"cannot run {tool} --version: {exc}") from exc
    said = (done.stdout or done.stderr).decode("utf-8", "replace").strip()
    return said.splitlines()[0] if said else Path(tool).name


def _steps(kind: EnvironmentKind, tool: str, folder: Path, environment_file: str) -> list[list[str]]:
    if kind is EnvironmentKind.PYTHON:
        python = str(folder / "bin" / "python")
        return [
            [tool, "venv", "--no-project", "--no-config", "--relocatable", "--python", sys.executable, str(folder)],
            [tool, "pip", "install", "--no-config", "--python", python, "--requirement", environment_file],
        ]
    if kind is EnvironmentKind.R:
        # Not --vanilla: the machine's Rprofile.site (or R_PROFILE_USER, passed by the
        # workspace's `model_environment:`) may name the CRAN mirror to use.
        return [[tool, "-e", _R_BUILD, str(folder / "library"), environment_file]]
    if Path(tool).name == "micromamba":
        return [[tool, "create", "--yes", "--prefix", str(folder), "--file", environment_file]]
    return [[tool, "env", "create", "--prefix", str(folder), "--file", environment_file]]


def _tool_variables(kind: EnvironmentKind, work: Path, caches: Path) -> dict[str, str]:
    if kind is EnvironmentKind.PYTHON:
        return {
            "UV_CACHE_DIR": str(caches / "uv"),
            "UV_PYTHON_DOWNLOADS": "never",
            "UV_SYSTEM_CERTS": "1",  # this machine's certificates, as pip uses (UV_NATIVE_TLS before uv 0.9)
            "UV_NATIVE_TLS": "1",
            "NO_COLOR": "1",
        }
    if kind is EnvironmentKind.CONDA:
        return {"CONDA_PKGS_DIRS": str(caches / "conda-pkgs"), "MAMBA_ROOT_PREFIX": str(work / "root")}
    return {}


# Installs what a renv.lock or a DESCRIPTION names into a library folder (args: library, file),
# and fails when a package did not install (install.packages only warns).
_R_BUILD = r"""
args <- commandArgs(trailingOnly = TRUE)
library <- args[[1]]; file <- args[[2]]
dir.create(library, recursive = TRUE)
.libPaths(c(library, .libPaths()))
repos <- getOption("repos")
if (is.null(repos) || identical(unname(repos["CRAN"]), "@CRAN@")) repos <- c(CRAN = "https://cloud.r-project.org")
if (basename(file) == "renv.lock") {
  if (!requireNamespace("renv", quietly = TRUE)) install.packages("renv", lib = library, repos = repos)
  renv::restore(lockfile = file, library = library, prompt = FALSE)
  wanted <- names(renv::lockfile_read(file)$Packages)
} else {
  description <- read.dcf(file)
  fields <- intersect(c("Depends", "Imports", "LinkingTo"), colnames(description))
  named <- unlist(lapply(fields, function(f) strsplit(description[1, f], ",")[[1]]))
  wanted <- trimws(sub("\\(.*", "", named))
  base <- rownames(installed.packages(priority = "base"))
  wanted <- setdiff(wanted[nzchar(wanted)], c("R", base))
  missing <- wanted[!vapply(wanted, requireNamespace, logical(1), quietly = TRUE)]
  if (length(missing)) install.packages(missing, lib = library, repos = repos)
}
failed <- wanted[!vapply(wanted, requireNamespace, logical(1), quietly = TRUE)]
if (length(failed)) { message("not installed: ", paste(failed, collapse = ", ")); quit(status = 1) }
"""


def _add_job_helper(folder: Path) -> None:
    """``from modelrunner import job`` in the environment: modelrunner's own package folder,
    linked, without its dependencies, so the modules that need only the standard library (the
    ``job`` helper; the notebook runner, given papermill in the environment) work in it."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    package = folder / "lib" / version / "site-packages" / "modelrunner"
    if package.exists():  # the environment installs modelrunner itself
        return
    package.symlink_to(_PACKAGE, target_is_directory=True)


def _take_back(folder: Path) -> None:
    """Make a build done as the models' user this process's, so no model can change it later."""
    uid, gid = os.geteuid(), os.getegid()
    os.chown(folder, uid, gid, follow_symlinks=False)
    for root, folders, files in os.walk(folder):
        for name in (*folders, *files):
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


def _copy_output(process: subprocess.Popen[bytes], log: IO[bytes], last: collections.deque[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        log.write(line)
        log.flush()
        last.append(line.decode("utf-8", "replace").strip())


def _note(log: IO[bytes], message: str) -> None:
    log.write(f"modelrunner: {message}\n".encode())
    log.flush()
