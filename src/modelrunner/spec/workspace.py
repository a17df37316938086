"""A workspace: ``modelrunner.yaml`` and the model folders below it, re-read when they change."""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from modelrunner.errors import NotFound, SpecError
from modelrunner.spec.model_spec import MODEL_FILE, ModelSpec, SpecProblem, load_model_spec, program_problem
from modelrunner.spec.model_version import content_hash, fingerprint

WORKSPACE_FILE = "modelrunner.yaml"
TEMPLATE = Path(__file__).parent / "workspace_template"
_SKIPPED_DIRS = {".modelrunner", ".git", "__pycache__", ".venv", "node_modules"}


class WorkspaceSpec(BaseModel):
    """``modelrunner.yaml``; later issues add datasets, backends, schedules and channels."""

    model_config = ConfigDict(extra="forbid")

    name: str = "workspace"


@dataclass(frozen=True)
class Model:
    """A loaded model: its spec, where it lives and the version of its current content."""

    spec: ModelSpec
    folder: Path
    version: str

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class _Cached:
    fingerprint: tuple[tuple[str, int, int], ...]
    model: Model | None
    problems: list[SpecProblem]


class Workspace:
    """The models of one workspace folder.

    Lookups re-check each model folder's file names, sizes and times, so an edited model gets a
    new version without a restart, while an unchanged one is not hashed again.
    """

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._cache: dict[Path, _Cached] = {}
        self._lock = threading.Lock()
        if not self.root.is_dir():
            raise SpecError(f"workspace folder {root} does not exist", problems=[])

    def model_folders(self) -> list[Path]:
        """Every folder below the root holding a model.yaml (model folders are not descended)."""
        found = []
        for current, dirs, files in os.walk(self.root):
            if MODEL_FILE in files:
                found.append(Path(current))
                dirs[:] = []
                continue
            dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS and not d.startswith("."))
        return sorted(found)

    def models(self) -> list[Model]:
        """The valid models, sorted by name."""
        loaded = (self._load(folder) for folder in self.model_folders())
        return sorted((entry.model for entry in loaded if entry.model), key=lambda m: m.name)

    def model(self, name: str) -> Model:
        """The model called ``name``; NotFound if none, SpecError if its model.yaml is broken."""
        for folder in self.model_folders():
            if folder.name != name:
                continue
            entry = self._load(folder)
            if entry.model is None:
                raise SpecError(
                    f"model '{name}' has a broken spec: " + "; ".join(map(str, entry.problems)),
                    problems=[str(p) for p in entry.problems],
                )
            return entry.model
        raise NotFound(f"unknown model '{name}'", model=name)

    def problems(self) -> list[SpecProblem]:
        """Every problem in the workspace file and the model specs, including programs that cannot
        be found (empty when all is well)."""
        problems = self._workspace_problems()
        seen: dict[str, Path] = {}
        for folder in self.model_folders():
            entry = self._load(folder)
            problems.extend(entry.problems)
            if entry.model:
                missing_program = program_problem(entry.model.spec, folder, self._shown(folder / MODEL_FILE))
                if missing_program:
                    problems.append(missing_program)
                if entry.model.name in seen:
                    problems.append(
                        SpecProblem(
                            self._shown(folder / MODEL_FILE),
                            "name",
                            f"'{entry.model.name}' is also used by {self._shown(seen[entry.model.name] / MODEL_FILE)}",
                        )
                    )
                seen[entry.model.name] = folder
        return problems

    def _workspace_problems(self) -> list[SpecProblem]:
        path = self.root / WORKSPACE_FILE
        if not path.exists():
            return [SpecProblem(WORKSPACE_FILE, "", "is missing (run `modelrunner init` to create a workspace)")]
        try:
            raw: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            WorkspaceSpec.model_validate(raw)
        except yaml.YAMLError as exc:
            return [SpecProblem(WORKSPACE_FILE, "", f"not valid YAML: {exc}")]
        except ValidationError as exc:
            return [SpecProblem(WORKSPACE_FILE, ".".join(map(str, e["loc"])), e["msg"]) for e in exc.errors()]
        return []

    def _load(self, folder: Path) -> _Cached:
        current = fingerprint(folder)
        with self._lock:
            cached = self._cache.get(folder)
            if cached is None or cached.fingerprint != current:
                spec, problems = load_model_spec(folder, self._shown(folder / MODEL_FILE))
                model = Model(spec, folder, content_hash(folder)) if spec else None
                cached = _Cached(current, model, problems)
                self._cache[folder] = cached
            return cached

    def _shown(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def create_workspace(destination: Path) -> list[Path]:
    """Copy the example workspace into ``destination`` (which must be empty or absent)."""
    if destination.exists() and any(destination.iterdir()):
        raise SpecError(f"{destination} is not empty; choose a new folder", problems=[])
    shutil.copytree(TEMPLATE, destination, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    return sorted(p.relative_to(destination) for p in destination.rglob("*") if p.is_file())
