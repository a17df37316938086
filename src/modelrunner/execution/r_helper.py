"""modelrunner's R helper package (``library(modelrunner)``: ``params()``, ``inputs()``,
``outputs()``, ``checkpoint()``, ``progress()``), shipped as R source inside this Python package
and installed from it with ``R CMD INSTALL``: no CRAN, only R and its jsonlite package.

R models get it without asking: the first attempt on a machine whose command starts with
``Rscript`` or ``R`` installs it once into a folder of its own (one per helper source and R
version, so an upgrade of either installs it anew), and every R model's ``R_LIBS`` ends with that
folder. ``modelrunner r-helper install`` puts it into any R library, for work outside modelrunner.
"""

from __future__ import annotations

import functools
import hashlib
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import filelock

from modelrunner.errors import ModelrunnerError

SOURCE = Path(__file__).resolve().parent.parent / "r" / "modelrunner"
R_PROGRAMS = frozenset({"Rscript", "R"})
# Its folder among a machine's environments (a server's data folder/environments, or a worker's).
R_HELPER_FOLDER = "r-helper"
_INSTALL_TIMEOUT = 300.0
_LAST_LINES = 6
# What R CMD INSTALL sees of this process's environment: where R finds jsonlite, and no more.
_INSTALL_VARIABLES = ("PATH", "LANG", "HOME", "R_LIBS", "R_LIBS_USER", "R_LIBS_SITE")
_MISSING_R = "R is not installed here (no R on PATH): install it (Debian: apt-get install r-base-core)"
_MISSING_JSONLITE = (
    "the R package jsonlite, which modelrunner's R helper needs, is not installed: install it "
    "(Debian: apt-get install r-cran-jsonlite; elsewhere, in R: install.packages('jsonlite'))"
)


def starts_r(command: list[str]) -> bool:
    """Whether ``command`` starts R (``Rscript``, ``R``, or a path to either)."""
    return bool(command) and Path(command[0]).name in R_PROGRAMS


def with_library(env: Mapping[str, str], library: Path) -> dict[str, str]:
    """``env`` with ``library`` last on R_LIBS: a model's own R environment (its R_LIBS) still
    comes first, so a helper of its own would win."""
    given = [part for part in env.get("R_LIBS", "").split(os.pathsep) if part]
    return {**env, "R_LIBS": os.pathsep.join([*given, str(library)])}


def install(library: Path, path: str | None = None, umask: int = 0o022) -> str:
    """Install the helper into the R library folder ``library`` (made if missing) with the ``R``
    found on ``path`` (this process's PATH by default); R CMD INSTALL's output. ModelrunnerError
    saying what is missing (R, jsonlite) or how the install failed."""
    program = shutil.which("R", path=path)
    if program is None:
        raise ModelrunnerError(_MISSING_R)
    library.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="modelrunner-r-helper-") as work:
        # A copy: R CMD INSTALL may write next to the source, which a wheel's folder may not allow.
        source = Path(work) / "modelrunner"
        shutil.copytree(SOURCE, source)
        env = {name: os.environ[name] for name in _INSTALL_VARIABLES if name in os.environ}
        env["TMPDIR"] = work
        try:
            done = subprocess.run(
                [program, "CMD", "INSTALL", "--no-docs", "--no-html", "--no-multiarch", f"--library={library}", source],
                env=env,
                capture_output=True,
                timeout=_INSTALL_TIMEOUT,
                umask=umask,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ModelrunnerError(f"cannot install modelrunner's R helper: {exc}") from exc
    said = (done.stdout + done.stderr).decode("utf-8", "replace")
    if done.returncode != 0:
        if "jsonlite" in said and ("not available" in said or "no package called" in said):
            raise ModelrunnerError(_MISSING_JSONLITE)
        last = "; ".join(line.strip() for line in said.strip().splitlines()[-_LAST_LINES:] if line.strip())
        raise ModelrunnerError(f"cannot install modelrunner's R helper into {library}: {last or '(no output)'}")
    return said


def default_library(path: str | None = None) -> Path:
    """Where R started by hand installs packages: its first library this process may write to,
    else the user's own library (R_LIBS_USER)."""
    program = shutil.which("Rscript", path=path)
    if program is None:
        raise ModelrunnerError(_MISSING_R)
    try:
        done = subprocess.run(
            [program, "--vanilla", "-e", _DEFAULT_LIBRARY], capture_output=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelrunnerError(f"cannot ask R for its libraries: {exc}") from exc
    found = done.stdout.decode("utf-8", "replace").strip()
    if done.returncode != 0 or not found:
        raise ModelrunnerError(f"cannot ask R for its libraries: {done.stderr.decode('utf-8', 'replace').strip()}")
    return Path(found)


_DEFAULT_LIBRARY = (
    "paths <- .libPaths(); writable <- paths[file.access(paths, 2) == 0]; "
    "cat(if (length(writable)) writable[[1]] else "
    "path.expand(strsplit(Sys.getenv('R_LIBS_USER'), .Platform$path.sep)[[1]][[1]]))"
)


class RHelper:
    """The helper installed once per helper source and R version below ``root`` (on this
    machine, or on every machine sharing it); attempts call :meth:`library` before they start R."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def library(self, path: str) -> Path:
        """The library folder holding the helper for the R found on ``path`` (the model's PATH),
        installed now unless it was before. ModelrunnerError saying what is missing otherwise."""
        program = shutil.which("R", path=path)
        if program is None:
            raise ModelrunnerError(_MISSING_R)
        folder = self.root / _digest(program)
        if (folder / "modelrunner" / "DESCRIPTION").is_file():
            return folder
        for above in (self.root.parent, self.root):
            if not above.is_dir():
                above.mkdir(parents=True)
                above.chmod(0o711)  # models (perhaps another user) pass through to their library
        with filelock.FileLock(self.root / f".{folder.name}.lock"):
            if (folder / "modelrunner" / "DESCRIPTION").is_file():
                return folder  # another attempt installed it meanwhile
            building = self.root / f".{folder.name}-{secrets.token_hex(4)}"
            try:
                install(building, path)
                building.chmod(0o755)
                building.rename(folder)  # whole or not at all
            finally:
                shutil.rmtree(building, ignore_errors=True)
        return folder


@functools.cache
def _digest(program: str) -> str:
    """A name for the helper built from this source with the R at ``program``."""
    try:
        done = subprocess.run([program, "--version"], capture_output=True, timeout=60, check=False)
        version = done.stdout.decode("utf-8", "replace").strip().splitlines()[0] if done.stdout.strip() else ""
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelrunnerError(f"cannot run {program} --version: {exc}") from exc
    hashed = hashlib.sha256(f"{os.path.realpath(program)}\n{version}\n".encode())
    for file in sorted(SOURCE.rglob("*")):
        if file.is_file():
            hashed.update(f"{file.relative_to(SOURCE)}\n".encode() + file.read_bytes())
    return hashed.hexdigest()[:24]
