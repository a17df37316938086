"""A workspace: ``modelrunner.yaml`` and the model folders below it, re-read when they change."""

from __future__ import annotations

import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from modelrunner.errors import InvalidInput, NotFound, SpecError
from modelrunner.spec.access_spec import AccessSpec
from modelrunner.spec.automation_spec import ProfileSpec, ScheduleSpec, TriggerEvent, TriggerSpec
from modelrunner.spec.azure_batch_spec import AzureBatchBackendSpec
from modelrunner.spec.backend_spec import (
    BACKEND_TYPES,
    DEFAULT_BACKEND,
    BackendSpec,
    LocalBackendSpec,
    RoutingRule,
)
from modelrunner.spec.dataset_spec import DatasetSpec
from modelrunner.spec.image_backends import engine_problems, image_problems
from modelrunner.spec.model_spec import (
    MODEL_FILE,
    ModelSpec,
    Resources,
    SpecProblem,
    load_model_spec,
    message_of,
    program_problems,
)
from modelrunner.spec.model_version import LinkRefused, content_hash, fingerprint
from modelrunner.spec.names import RESERVED_VARIABLE_PREFIX, check_names
from modelrunner.spec.notebook_check import notebook_problems
from modelrunner.spec.notify_check import notify_problems
from modelrunner.spec.notify_spec import NotificationsSpec
from modelrunner.spec.overrides import checked_overrides
from modelrunner.spec.step_files import file_problems

WORKSPACE_FILE = "modelrunner.yaml"
TEMPLATE = Path(__file__).parent / "workspace_template"
FORM_TEMPLATES = Path(__file__).parent / "form_templates"
# The forms ``modelrunner init --template`` writes its example model in (python: TEMPLATE's own).
TEMPLATE_FORMS = ("python", "notebook", "r", "image")
_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SKIPPED_DIRS = {".modelrunner", ".git", "__pycache__", ".venv", "node_modules"}


class WorkspaceSpec(BaseModel):
    """``modelrunner.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "workspace"
    datasets: dict[str, DatasetSpec] = Field(default_factory=dict)
    schedules: list[ScheduleSpec] = Field(default_factory=list, description="Schedules of several models (`model:`)")
    profiles: dict[str, ProfileSpec] = Field(default_factory=dict)
    access: AccessSpec = AccessSpec()
    backends: dict[str, BackendSpec] = Field(
        default_factory=dict, description="Where runs execute; one `local` backend when none is declared"
    )
    default_backend: str | None = Field(default=None, description="The backend of runs no other rule routes")
    routing: list[RoutingRule] = Field(default_factory=list, description="Backends by the submitter's group")
    notifications: NotificationsSpec = NotificationsSpec()
    resource_classes: dict[str, Resources] = Field(
        default_factory=dict,
        description="Named resources (cpu, memory, gpus, timeout) a model asks for as `resources: {class: NAME}`",
    )
    model_environment: list[str] = Field(
        default_factory=list,
        description="Variables of the runner's environment (the server's, a worker's, modelrunner exec's) that "
        "models see too, beyond PATH, locale and time zone; never a secret of the server's",
    )

    @field_validator("datasets", mode="before")
    @classmethod
    def _valid_dataset_names(cls, value: Any) -> Any:
        if isinstance(value, dict):
            check_names(value, "dataset")
        return value

    @field_validator("backends", mode="before")
    @classmethod
    def _valid_backend_names(cls, value: Any) -> Any:
        if isinstance(value, dict):
            check_names(value, "backend")
        return value

    @field_validator("resource_classes")
    @classmethod
    def _classes_name_no_class(cls, value: dict[str, Resources]) -> dict[str, Resources]:
        check_names(value, "resource class")
        for name, resources in value.items():
            if resources.resource_class is not None:
                raise ValueError(f"{name}: a resource class cannot name another class")
        return value

    @field_validator("model_environment")
    @classmethod
    def _passable_variables(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _VARIABLE.match(name):
                raise ValueError(f"{name!r} is not the name of an environment variable")
            if name.startswith(RESERVED_VARIABLE_PREFIX):
                raise ValueError(f"{name}: the server's own settings (MODELRUNNER_*) never reach a model")
        return value

    @model_validator(mode="after")
    def _no_secret_passed(self) -> WorkspaceSpec:
        secrets = {
            spec.account_key_env
            for spec in self.backends.values()
            if isinstance(spec, AzureBatchBackendSpec) and spec.account_key_env is not None
        }
        if self.notifications.email is not None and self.notifications.email.password_env is not None:
            secrets.add(self.notifications.email.password_env)
        for name in self.model_environment:
            if name in secrets or name.removesuffix("_FILE") in secrets:
                raise ValueError(f"model_environment: {name} holds a secret of the server's; it never reaches a model")
        return self

    def declared_backends(self) -> dict[str, BackendSpec]:
        """The backends by name: those declared, or one ``local`` backend when none is."""
        return dict(self.backends) or {DEFAULT_BACKEND: LocalBackendSpec()}

    def workspace_backend(self) -> str:
        """The backend of runs that no request, group or model routes elsewhere."""
        return self.default_backend or next(iter(self.declared_backends()))


@dataclass(frozen=True)
class Model:
    """A loaded model: its spec, where it lives and the version of its current content."""

    spec: ModelSpec
    folder: Path
    version: str

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class Schedule:
    """A schedule of the workspace, named ``<model>/<schedule>``."""

    name: str
    model: str
    spec: ScheduleSpec
    model_automatic: bool  # the model's own switch for schedules and triggers

    @property
    def active(self) -> bool:
        return self.spec.enabled and self.model_automatic


@dataclass(frozen=True)
class Trigger:
    """A trigger of a model, named ``<model>/<trigger>``."""

    name: str
    model: str
    spec: TriggerSpec
    model_automatic: bool

    @property
    def active(self) -> bool:
        return self.spec.enabled and self.model_automatic


_Rule = TypeVar("_Rule", Schedule, Trigger)


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
        self._spec: tuple[tuple[int, int] | None, WorkspaceSpec | None, list[SpecProblem]] | None = None
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
        raise unknown_model(name)

    def problems(self) -> list[SpecProblem]:
        """Every problem in the workspace file and the model specs, including programs and notebooks that cannot
        be found (empty when all is well)."""
        problems = self._workspace_problems()
        seen: dict[str, Path] = {}
        for folder in self.model_folders():
            entry = self._load(folder)
            problems.extend(entry.problems)
            if entry.model:
                problems.extend(program_problems(entry.model.spec, folder, self._shown(folder / MODEL_FILE)))
                problems.extend(notebook_problems(entry.model.spec, folder, self._shown(folder / MODEL_FILE)))
                problems.extend(self._input_problems(entry.model, self._shown(folder / MODEL_FILE)))
                model_file = self._shown(folder / MODEL_FILE)
                problems.extend(SpecProblem(model_file, f, m) for f, m in file_problems(entry.model.spec, folder))
                problems.extend(SpecProblem(model_file, f, m) for f, m in notify_problems(entry.model.spec))
                if entry.model.name in seen:
                    problems.append(
                        SpecProblem(
                            self._shown(folder / MODEL_FILE),
                            "name",
                            f"'{entry.model.name}' is also used by {self._shown(seen[entry.model.name] / MODEL_FILE)}",
                        )
                    )
                seen[entry.model.name] = folder
        problems.extend(self._automation_problems())
        problems.extend(self._backend_problems())
        spec = self._load_spec()[0]
        if spec is not None:
            shown = [(model.spec, self._shown(model.folder / MODEL_FILE)) for model in self.models()]
            problems.extend(image_problems(spec.declared_backends(), spec.workspace_backend(), spec.routing, shown))
            problems.extend(engine_problems(spec.declared_backends(), WORKSPACE_FILE))
        problems.extend(self._resource_class_problems())
        return problems

    def schedules(self) -> list[Schedule]:
        """Every schedule: those in the valid models' ``model.yaml`` and in ``modelrunner.yaml``."""
        models = {model.name: model for model in self.models()}
        found = [
            Schedule(f"{model.name}/{spec.name}", model.name, spec, model.spec.automatic)
            for model in models.values()
            for spec in model.spec.schedules
        ]
        spec = self._load_spec()[0]
        for entry in spec.schedules if spec is not None else []:
            model_name = entry.model or ""
            target = models.get(model_name)
            found.append(
                Schedule(f"{model_name}/{entry.name}", model_name, entry, target.spec.automatic if target else False)
            )
        return sorted(found, key=lambda s: s.name)

    def schedule(self, name: str) -> Schedule:
        """The schedule called ``name`` (``model/schedule``, or just ``schedule`` when unique)."""
        return _by_name(self.schedules(), name, "schedule")

    def triggers(self) -> list[Trigger]:
        """Every trigger of the valid models."""
        return sorted(
            (
                Trigger(f"{model.name}/{spec.name}", model.name, spec, model.spec.automatic)
                for model in self.models()
                for spec in model.spec.triggers
            ),
            key=lambda t: t.name,
        )

    def trigger(self, name: str) -> Trigger:
        """The trigger called ``name`` (``model/trigger``, or just ``trigger`` when unique)."""
        return _by_name(self.triggers(), name, "trigger")

    def profile(self, name: str) -> ProfileSpec:
        """The profile called ``name``; NotFound naming the profiles there are."""
        profiles = self.spec().profiles
        if name not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise NotFound(f"unknown profile '{name}' (profiles in {WORKSPACE_FILE}: {known})", profile=name)
        return profiles[name]

    def _backend_problems(self) -> list[SpecProblem]:
        spec = self._load_spec()[0]
        if spec is None:
            return []
        backends = spec.declared_backends()

        def unknown(name: str) -> str:
            return f"unknown backend '{name}' (backends: {', '.join(sorted(backends))})"

        problems = []
        if spec.default_backend is not None and spec.default_backend not in backends:
            problems.append(SpecProblem(WORKSPACE_FILE, "default_backend", unknown(spec.default_backend)))
        for index, rule in enumerate(spec.routing):
            if rule.backend not in backends:
                problems.append(SpecProblem(WORKSPACE_FILE, f"routing.{index}.backend", unknown(rule.backend)))
        for model in self.models():
            if model.spec.backend is not None and model.spec.backend not in backends:
                shown = self._shown(model.folder / MODEL_FILE)
                problems.append(SpecProblem(shown, "backend", unknown(model.spec.backend)))
        return problems

    def resource_classes(self) -> dict[str, Resources]:
        """``resource_classes:`` of modelrunner.yaml; none when the file is missing or broken
        (``check`` and submit say why)."""
        spec = self._load_spec()[0]
        return dict(spec.resource_classes) if spec is not None else {}

    def _resource_class_problems(self) -> list[SpecProblem]:
        classes = self.resource_classes()

        def unknown(name: str) -> str:
            known = ", ".join(sorted(classes)) or f"none declared in {WORKSPACE_FILE}"
            return f"unknown resource class '{name}' (resource_classes: {known})"

        problems = []
        for model in self.models():
            for where, name in model.spec.resource_classes():
                if name not in classes:
                    problems.append(SpecProblem(self._shown(model.folder / MODEL_FILE), where, unknown(name)))
        spec = self._load_spec()[0]
        for backend_name, backend in spec.backends.items() if spec is not None else []:
            # A backend's `classes:` maps resource classes to its own terms; a misspelt one would
            # quietly send that class's runs to the backend's defaults.
            for name in getattr(backend, "classes", {}):
                if name not in classes:
                    where = f"backends.{backend_name}.classes.{name}"
                    problems.append(SpecProblem(WORKSPACE_FILE, where, unknown(name)))
        return problems

    def _automation_problems(self) -> list[SpecProblem]:
        spec = self._load_spec()[0]
        if spec is None:
            return []
        models = {model.name: model for model in self.models()}
        problems = []
        for index, entry in enumerate(spec.schedules):
            where = f"schedules.{index}.model"
            if entry.model is None:
                problems.append(SpecProblem(WORKSPACE_FILE, where, "is required (the model the schedule runs)"))
            elif entry.model not in models:
                problems.append(SpecProblem(WORKSPACE_FILE, where, f"unknown model '{entry.model}'"))
        names: set[str] = set()
        for schedule in self.schedules():
            if schedule.name in names:
                problems.append(SpecProblem(WORKSPACE_FILE, "schedules", f"'{schedule.name}' is declared twice"))
            names.add(schedule.name)
        for model in models.values():
            shown = self._shown(model.folder / MODEL_FILE)
            for index, schedule_spec in enumerate(model.spec.schedules):
                if schedule_spec.model not in (None, model.name):
                    message = "a model's own schedule runs that model; remove it"
                    problems.append(SpecProblem(shown, f"schedules.{index}.model", message))
                problems.extend(
                    SpecProblem(shown, f"schedules.{index}.{where}", message)
                    for where, message in _override_problems(schedule_spec, model)
                )
            for index, trigger in enumerate(model.spec.triggers):
                problems.extend(
                    SpecProblem(shown, f"triggers.{index}.{field}", message)
                    for field, message in self._watched_problems(trigger, models, spec)
                )
        return problems

    @staticmethod
    def _watched_problems(trigger: TriggerSpec, models: dict[str, Model], spec: WorkspaceSpec) -> list[tuple[str, str]]:
        if trigger.on == TriggerEvent.VERSION_ADDED:
            if trigger.dataset not in spec.datasets:
                return [("dataset", f"dataset '{trigger.dataset}' is not declared in {WORKSPACE_FILE}")]
            return []
        watched = models.get(trigger.model or "")
        if watched is None:
            return [("model", f"unknown model '{trigger.model}'")]
        if trigger.step is not None and trigger.step not in watched.spec.steps:
            return [("step", f"model '{watched.name}' has no step '{trigger.step}'")]
        return []

    def _input_problems(self, model: Model, shown_as: str) -> list[SpecProblem]:
        spec = self._load_spec()[0]
        if spec is None:
            return []  # the broken workspace file is reported already
        return [
            SpecProblem(shown_as, f"inputs.{name}", f"dataset '{dataset}' is not declared in {WORKSPACE_FILE}")
            for name, dataset in model.spec.inputs.items()
            if dataset not in spec.datasets
        ]

    def spec(self) -> WorkspaceSpec:
        """``modelrunner.yaml`` as it is now (an empty spec if the file is missing); SpecError if
        it is broken."""
        spec, problems = self._load_spec()
        if spec is None:
            raise SpecError(
                f"{WORKSPACE_FILE} is broken: " + "; ".join(map(str, problems)), problems=[str(p) for p in problems]
            )
        return spec

    def datasets(self) -> dict[str, DatasetSpec]:
        return dict(self.spec().datasets)

    def dataset(self, name: str) -> DatasetSpec:
        """The dataset called ``name``; NotFound if the workspace declares none."""
        found = self.spec().datasets.get(name)
        if found is None:
            raise unknown_dataset(name)
        return found

    def _workspace_problems(self) -> list[SpecProblem]:
        if not (self.root / WORKSPACE_FILE).exists():
            return [SpecProblem(WORKSPACE_FILE, "", "is missing (run `modelrunner init` to create a workspace)")]
        return self._load_spec()[1]

    def _load_spec(self) -> tuple[WorkspaceSpec | None, list[SpecProblem]]:
        path = self.root / WORKSPACE_FILE
        try:
            stat = path.stat()
            stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            stamp = None
        with self._lock:
            if self._spec is not None and self._spec[0] == stamp:
                return self._spec[1], self._spec[2]
        loaded = _read_workspace_spec(path) if stamp is not None else (WorkspaceSpec(), [])
        with self._lock:
            self._spec = (stamp, *loaded)
        return loaded

    def _load(self, folder: Path) -> _Cached:
        try:
            current = fingerprint(folder)
        except LinkRefused as exc:  # a model that cannot be copied as it is cannot run: say why
            return _Cached((), None, [SpecProblem(self._shown(folder / MODEL_FILE), "", exc.message)])
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


def _by_name(every: list[_Rule], name: str, kind: str) -> _Rule:
    """The rule whose full name is ``name``, or the only one whose short name is; NotFound naming
    the candidates when several are."""
    matches = [r for r in every if r.name == name] or [r for r in every if r.name.split("/", 1)[1] == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        candidates = ", ".join(r.name for r in matches)
        raise NotFound(f"{kind} '{name}' is ambiguous; name one of {candidates}", **{kind: name})
    raise NotFound(f"unknown {kind} '{name}'", **{kind: name})


def _read_workspace_spec(path: Path) -> tuple[WorkspaceSpec | None, list[SpecProblem]]:
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return WorkspaceSpec.model_validate(raw), []
    except yaml.YAMLError as exc:
        return None, [SpecProblem(WORKSPACE_FILE, "", f"not valid YAML: {exc}")]
    except ValidationError as exc:
        return None, [SpecProblem(WORKSPACE_FILE, _field_of(e["loc"]), message_of(e)) for e in exc.errors()]


def _field_of(location: tuple[Any, ...]) -> str:
    # pydantic puts the `source` of a dataset into the path (datasets.x.git.repo), and the `type` of a
    # backend (backends.x.dask.scheduler); users wrote datasets.x.repo and backends.x.scheduler.
    if len(location) > 2 and location[0] == "datasets" and location[2] in {"git", "files", "http"}:
        location = location[:2] + location[3:]
    if len(location) > 2 and location[0] == "backends" and location[2] in BACKEND_TYPES:
        location = location[:2] + location[3:]
    return ".".join(map(str, location))


def create_workspace(destination: Path, form: str = "python") -> list[Path]:
    """Copy the example workspace into ``destination`` (which must be empty or absent), its
    example model ``growth`` in ``form``: one of ``TEMPLATE_FORMS``."""
    if form not in TEMPLATE_FORMS:
        raise SpecError(f"unknown template '{form}' (templates: {', '.join(TEMPLATE_FORMS)})", problems=[])
    if destination.exists() and any(destination.iterdir()):
        raise SpecError(f"{destination} is not empty; choose a new folder", problems=[])
    skipped = shutil.ignore_patterns("__pycache__")
    shutil.copytree(TEMPLATE, destination, dirs_exist_ok=True, ignore=skipped)
    if form != "python":
        # The same model in another form: its folder replaces the Python one.
        shutil.rmtree(destination / "growth")
        shutil.copytree(FORM_TEMPLATES / form, destination, dirs_exist_ok=True, ignore=skipped)
    return sorted(p.relative_to(destination) for p in destination.rglob("*") if p.is_file())


def unknown_model(name: str) -> NotFound:
    """The error for a model the workspace does not have; the pages give it for a model the
    caller may not view too, so that they never tell whether it exists."""
    return NotFound(f"unknown model '{name}'", model=name)


def unknown_dataset(name: str) -> NotFound:
    """The error for a dataset the workspace does not declare (and, on the pages, for one the
    caller may not see)."""
    return NotFound(f"unknown dataset '{name}' (datasets are declared in {WORKSPACE_FILE})", dataset=name)


def _override_problems(schedule: ScheduleSpec, model: Model) -> list[tuple[str, str]]:
    """(field, message) of each run's overrides of ``schedule`` that ``model`` would refuse."""
    found = []
    for index, overrides in enumerate(schedule.run_overrides()):
        try:
            checked_overrides(model.name, model.spec.overridable, overrides)
        except InvalidInput as exc:
            found.append((f"each.{index}" if schedule.each is not None else "overrides", exc.message))
    return found
