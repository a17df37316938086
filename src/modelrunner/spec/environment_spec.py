"""What ``environment:`` may name, which tool builds each kind, and what ``check`` says about it.

A model's environment file is one of its own files: a Python ``requirements*.txt`` or
``pyproject.toml`` (built with uv, a dependency of modelrunner), an R ``renv.lock`` or
``DESCRIPTION`` (built with ``Rscript`` where R is installed) or a conda ``environment.yml``
(built with micromamba, mamba or conda, the first found).
"""

from __future__ import annotations

import enum
import os
import shutil
from pathlib import Path, PurePosixPath

from modelrunner.spec.model_version import left_out


class EnvironmentKind(enum.StrEnum):
    PYTHON = "python"
    R = "r"
    CONDA = "conda"


KNOWN_FILES = "requirements.txt (any *.txt), pyproject.toml, renv.lock, DESCRIPTION or environment.yml"
CONDA_TOOLS = ("micromamba", "mamba", "conda")


def environment_kind(environment_file: str) -> EnvironmentKind | None:
    """The kind of environment a file of the model folder describes, by its name; None: none known."""
    name = PurePosixPath(environment_file).name
    if name == "pyproject.toml" or name.endswith(".txt"):
        return EnvironmentKind.PYTHON
    if name in ("renv.lock", "DESCRIPTION"):
        return EnvironmentKind.R
    if name.endswith((".yml", ".yaml")):
        return EnvironmentKind.CONDA
    return None


def find_tool(kind: EnvironmentKind, path: str | None) -> str | None:
    """The program that builds ``kind`` (found on ``path``, a PATH value), or None when this
    machine has none. uv comes with modelrunner."""
    if kind is EnvironmentKind.PYTHON:
        import uv

        try:
            return uv.find_uv_bin()
        except FileNotFoundError:
            return None
    names = ("Rscript",) if kind is EnvironmentKind.R else CONDA_TOOLS
    for name in names:
        found = shutil.which(name, path=path)
        if found:
            return found
    return None


def missing_tool_message(environment_file: str, kind: EnvironmentKind) -> str:
    """Why ``environment_file`` cannot be built on this machine, when its tool is missing."""
    if kind is EnvironmentKind.PYTHON:
        return f"{environment_file} is built with uv, which is missing from modelrunner's installation (pip install uv)"
    if kind is EnvironmentKind.R:
        return f"{environment_file} is an R environment, and R (Rscript) is not installed on this machine"
    return (
        f"{environment_file} is a conda environment, and none of {', '.join(CONDA_TOOLS)} is installed on this machine"
    )


def environment_problem(environment_file: str, folder: Path, path: str | None = None) -> str | None:
    """What keeps the model in ``folder`` from getting its environment here, or None: the file
    is missing, left out of the model's files, of no known kind, or its tool is not installed
    (looked up on ``path``, this process's PATH by default)."""
    kind = environment_kind(environment_file)
    if kind is None:
        return f"{environment_file!r} is not an environment file modelrunner builds ({KNOWN_FILES})"
    if not (folder / environment_file).is_file():
        return f"{environment_file!r} does not exist in the model folder"
    reason = left_out(folder, PurePosixPath(environment_file))
    if reason is not None:
        return f"{environment_file!r} is not part of the model: {reason}"
    if find_tool(kind, os.environ.get("PATH") if path is None else path) is None:
        return missing_tool_message(environment_file, kind)
    return None
