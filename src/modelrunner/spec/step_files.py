"""Which files of a model a pipeline step uses: its ``files:`` patterns, the model's
``shared_files:`` and the files its spec names (gitignore-style patterns, as .modelrunnerignore)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pathspec

from modelrunner.errors import SpecError
from modelrunner.spec.model_spec import ModelSpec
from modelrunner.spec.model_version import model_files


def used_files(spec: ModelSpec, name: str, every: list[str]) -> set[str] | None:
    """The files (of ``every``, the model's files as posix paths) that step ``name`` uses; None
    when it has no ``files:`` and so uses the whole folder. SpecError names a pattern that
    matches no file."""
    part = spec.part(name)
    if part.files is None:
        return None
    shared = _matching(every, spec.shared_files, "shared_files")
    return shared | _matching(every, part.files, f"steps.{name}.files") | _named(spec, name, set(every))


def file_problems(spec: ModelSpec, folder: Path) -> list[tuple[str, str]]:
    """(field, message) for each ``files:``/``shared_files:`` pattern that matches no file of the model."""
    if not spec.shared_files and not any(step.files for step in spec.steps.values()):
        return []
    every = [path.as_posix() for path in model_files(folder)]
    named = [("shared_files", spec.shared_files)] + [(f"steps.{n}.files", s.files or []) for n, s in spec.steps.items()]
    return [
        (field, f"{pattern!r} matches no file of the model")
        for field, patterns in named
        for pattern in patterns
        if not _matches(every, pattern)
    ]


def _matches(every: list[str], pattern: str) -> list[str]:
    spec = pathspec.GitIgnoreSpec.from_lines([pattern])
    return [path for path in every if spec.match_file(path)]


def _matching(every: list[str], patterns: list[str], field: str) -> set[str]:
    found: set[str] = set()
    for pattern in patterns:
        matched = _matches(every, pattern)
        if not matched:
            raise SpecError(f"{field}: {pattern!r} matches no file of the model", problems=[f"{field}: {pattern!r}"])
        found.update(matched)
    return found


def _named(spec: ModelSpec, name: str, every: set[str]) -> set[str]:
    """The model files a step's spec names: its notebook, its environment file, and the
    arguments of its command that are files of the model (``python fit.py`` uses fit.py)."""
    part = spec.part(name)
    named = [part.notebook, part.environment, *(part.command or [])]
    return {str(PurePosixPath(arg)) for arg in named if arg is not None and str(PurePosixPath(arg)) in every}
