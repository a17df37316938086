"""The ``model.yaml`` schema and its loading, with problems named by file and field."""

from __future__ import annotations

import functools
import math
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from modelrunner.errors import SpecError
from modelrunner.spec.automation_spec import ScheduleSpec, TriggerSpec
from modelrunner.spec.duration import parse_duration
from modelrunner.spec.environment_spec import environment_problem
from modelrunner.spec.file_params import check_params_folder
from modelrunner.spec.input_folders import check_input_folders, split_folder_inputs
from modelrunner.spec.model_version import left_out
from modelrunner.spec.names import check_name, check_names
from modelrunner.spec.notify_spec import ModelNotifySpec
from modelrunner.spec.overrides import Overridable
from modelrunner.spec.step_conditions import StepCondition

MODEL_FILE = "model.yaml"
# In a command, these names mean the interpreter modelrunner itself runs under.
PYTHON_PROGRAMS = frozenset({"python", "python3"})


@dataclass(frozen=True)
class SpecProblem:
    """One thing wrong in a spec file: where, and what."""

    file: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message}" if self.field else f"{self.file}: {self.message}"


class Resources(BaseModel):
    """What one attempt needs; ``timeout`` is seconds (or ``"30m"``, ``"2h"``). ``class`` names a
    resource class of modelrunner.yaml (``resource_classes:``): its values fill in what is left
    out here. Left out everywhere: 1 CPU, no memory limit, no GPU, no timeout."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    resource_class: str | None = Field(default=None, alias="class", description="A class of `resource_classes:`")
    cpu: float | None = Field(default=None, gt=0, description="CPUs (default 1)")
    memory: str | None = Field(default=None, description="e.g. 512Mi, 8Gi")
    gpus: int | None = Field(default=None, ge=0, description="GPUs (default none)")
    timeout: float | None = Field(default=None, gt=0, description="Seconds, or a duration like 30m")

    @field_validator("timeout", mode="before")
    @classmethod
    def _parse_duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @property
    def slots(self) -> int:
        return max(1, math.ceil(self.cpu or 1))

    def in_class(self, classes: Mapping[str, Resources]) -> Resources:
        """These resources with their class's values filled in where none is given here. A
        class that is not declared raises SpecError naming it."""
        if self.resource_class is None:
            return self
        declared = classes.get(self.resource_class)
        if declared is None:
            known = ", ".join(sorted(classes)) or "none declared"
            message = f"unknown resource class '{self.resource_class}' (resource_classes: {known})"
            raise SpecError(message, resource_class=self.resource_class)
        given = {name: value for name, value in self.model_dump().items() if value is not None}
        return declared.model_copy(update=given)


class Retries(BaseModel):
    """How many more attempts a run gets after failed attempts (the model's fault), and after
    attempts lost or preempted (the infrastructure's): two budgets, so a spot interruption never
    spends a retry meant for a model's bug, nor the reverse."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    failed: int = Field(default=0, ge=0, le=100)
    lost: int = Field(default=2, ge=0, le=100)


class OutputDecl(BaseModel):
    """A file the model promises to write into its outputs folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    description: str = ""

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        if value.startswith("/") or ".." in Path(value).parts or not value.strip():
            raise ValueError("must be a relative path inside the outputs folder")
        return value


class ProgressSpec(BaseModel):
    """How a model's progress is read from what it prints: ``::progress::`` lines always; with
    ``bars`` (the default) also the progress bars it prints (tqdm's), until its first such line."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bars: bool = Field(default=True, description="false: progress bars the model prints do not move the run's progress")


class Need(StrEnum):
    """How a step needs another (``needs: {tests: item}``; a list means ``all`` for each)."""

    ALL = "all"  # once every run of it succeeded; sees all of its outputs
    ITEM = "item"  # item by item: each item once the same item of it succeeded; sees that item's outputs
    OPTIONAL = "optional"  # as `all`, but a step left out (`when:`, a profile) is not waited for


class StepSpec(BaseModel):
    """One step of a pipeline: its own command, resources and retries, run once its ``needs`` succeeded.

    ``foreach`` fans the step out into one run per item: a list, ``params.<name>`` (an array
    parameter) or ``inputs.<name>`` (the top-level files and folders of an input's version); no
    item is a step that succeeds at once. ``needs`` is a list of steps, or a mapping of step to
    how it is needed (see Need). ``when`` leaves the step out unless a condition on the
    parameters holds (see step_conditions).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    command: list[str] | None = Field(default=None, min_length=1)
    notebook: str | None = Field(default=None, description="A Jupyter notebook of the model folder, run as the model")
    image: str | None = Field(default=None, description="A container image run as the model (`command` replaces CMD)")
    environment: str | None = Field(
        default=None, description="The file of the model folder its environment is built from (requirements.txt, ...)"
    )
    resources: Resources = Resources()
    retries: Retries = Retries()
    outputs: list[OutputDecl] = Field(default_factory=list)
    needs: dict[str, Need] = Field(default_factory=dict)
    foreach: list[Any] | str | None = None
    publish: bool = Field(default=False, description="Publishes results; a profile can switch such steps off")
    when: str | None = Field(default=None, description="Runs only if this holds, e.g. `params.daily` or `not params.x`")
    files: list[str] | None = Field(
        default=None,
        description="The files it uses (gitignore-style patterns): only they and its own spec make its version; "
        "none: the whole folder",
    )

    @field_validator("command")
    @classmethod
    def _non_empty_program(cls, value: list[str] | None) -> list[str] | None:
        return _non_empty_program(value) if value is not None else None

    @field_validator("notebook", "environment")
    @classmethod
    def _in_model_folder(cls, value: str | None) -> str | None:
        return _relative_file(value) if value is not None else None

    @field_validator("files")
    @classmethod
    def _file_patterns(cls, value: list[str] | None) -> list[str] | None:
        return _file_patterns(value) if value is not None else None

    @model_validator(mode="after")
    def _one_form(self) -> StepSpec:
        _check_form(self.command, self.notebook, self.image)
        return self

    @field_validator("retries", mode="before")
    @classmethod
    def _retries_shorthand(cls, value: Any) -> Any:
        return _retries_of(value)

    @field_validator("foreach")
    @classmethod
    def _foreach_form(cls, value: list[Any] | str | None) -> list[Any] | str | None:
        if isinstance(value, str) and not value.startswith(("params.", "inputs.")):
            raise ValueError("must be a list, 'params.<name>' or 'inputs.<name>'")
        return value

    @field_validator("needs", mode="before")
    @classmethod
    def _needs_list(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {name: Need.ALL.value for name in value}
        return value

    @field_serializer("needs")
    def _needs_as_written(self, needs: dict[str, Need]) -> list[str] | dict[str, str]:
        # A list while every need is whole, as models without item chains have always said.
        if all(how == Need.ALL for how in needs.values()):
            return list(needs)
        return {name: how.value for name, how in needs.items()}

    @field_validator("when")
    @classmethod
    def _condition(cls, value: str | None) -> str | None:
        if value is not None:
            StepCondition.parse(value)
        return value

    @property
    def condition(self) -> StepCondition | None:
        return StepCondition.parse(self.when) if self.when is not None else None

    def needed(self, how: Need) -> list[str]:
        """The steps this one needs in the way ``how``."""
        return [name for name, given in self.needs.items() if given == how]


class ModelSpec(BaseModel):
    """A model as its author wrote it in ``model.yaml``: a ``command``, or ``steps`` (a pipeline)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    title: str = ""
    description: str = ""
    command: list[str] | None = Field(default=None, min_length=1)
    notebook: str | None = Field(default=None, description="A Jupyter notebook of the model folder, run as the model")
    image: str | None = Field(default=None, description="A container image run as the model (`command` replaces CMD)")
    environment: str | None = Field(
        default=None,
        description="The file of the model folder its environment is built from (steps may name their own)",
    )
    steps: dict[str, StepSpec] = Field(default_factory=dict)
    shared_files: list[str] = Field(
        default_factory=list,
        description="Files every step with `files:` uses too (gitignore-style patterns, e.g. lib/)",
    )
    params: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    resources: Resources = Resources()
    overridable: Overridable = Field(default_factory=Overridable, description="What a run may set for itself")
    retries: Retries = Retries()
    outputs: list[OutputDecl] = Field(default_factory=list)
    inputs: dict[str, str] = Field(
        default_factory=dict,
        description="Input name -> dataset name (or {dataset: NAME, path: params.PARAM}: only the folder the "
        "parameter names); the files appear in MODELRUNNER_INPUTS/<input>/",
    )
    input_folders: dict[str, str] = Field(
        default_factory=dict, description="Input name -> params.PARAM: the input is that folder of the dataset"
    )
    schedules: list[ScheduleSpec] = Field(default_factory=list)
    triggers: list[TriggerSpec] = Field(default_factory=list)
    automatic: bool = Field(default=True, description="false: its schedules and triggers create no runs")
    backend: str | None = Field(
        default=None, description="The backend of its runs unless the request or the submitter's group routes them"
    )
    progress: ProgressSpec = ProgressSpec()
    notify: ModelNotifySpec = Field(
        default=ModelNotifySpec(), description="What the model says in its runs' notifications (a summary output)"
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return check_name(value)

    @model_validator(mode="before")
    @classmethod
    def _folder_inputs(cls, data: Any) -> Any:
        return split_folder_inputs(data)

    @field_validator("inputs", mode="before")
    @classmethod
    def _valid_input_names(cls, value: Any) -> Any:
        if isinstance(value, dict):
            check_names(value, "input")
        return value

    @field_validator("steps", mode="before")
    @classmethod
    def _valid_step_names(cls, value: Any) -> Any:
        if isinstance(value, dict):
            check_names(value, "step")
        return value

    @field_validator("command")
    @classmethod
    def _non_empty_program(cls, value: list[str] | None) -> list[str] | None:
        return _non_empty_program(value) if value is not None else None

    @field_validator("notebook", "environment")
    @classmethod
    def _in_model_folder(cls, value: str | None) -> str | None:
        return _relative_file(value) if value is not None else None

    @field_validator("retries", mode="before")
    @classmethod
    def _retries_shorthand(cls, value: Any) -> Any:
        return _retries_of(value)

    @field_validator("shared_files")
    @classmethod
    def _shared_patterns(cls, value: list[str]) -> list[str]:
        return _file_patterns(value)

    @field_validator("params")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            jsonschema.Draft202012Validator.check_schema(value)
        except jsonschema.SchemaError as exc:
            where = ".".join(str(p) for p in exc.path)
            raise ValueError(f"not a valid JSON Schema{' at ' + where if where else ''}: {exc.message}") from exc
        if value.get("type", "object") != "object":
            raise ValueError("the parameter schema must describe an object (type: object)")
        return value

    @model_validator(mode="after")
    def _command_or_steps(self) -> ModelSpec:
        runs_itself = self.command is not None or self.notebook is not None or self.image is not None
        if not runs_itself and not self.steps:
            raise ValueError("command: is required (or `notebook`, `image`, or `steps` for a pipeline)")
        if runs_itself and self.steps:
            raise ValueError("steps: a model has either a `command`, `notebook` or `image`, or `steps`, not both")
        if runs_itself:
            _check_form(self.command, self.notebook, self.image)
        if self.steps and self.outputs:
            raise ValueError("outputs: a pipeline declares its outputs per step")
        if self.shared_files and not any(step.files is not None for step in self.steps.values()):
            raise ValueError("shared_files: only steps with `files:` use them (a step without uses the whole folder)")
        return self

    @model_validator(mode="after")
    def _steps_fit_together(self) -> ModelSpec:
        check_input_folders(self.input_folders, self.inputs, self.params)
        check_params_folder(self.params, [*self.inputs, *self.steps])
        for name, step in self.steps.items():
            if name in self.inputs:
                raise ValueError(f"steps.{name}: an input has this name too; both would be MODELRUNNER_INPUTS/{name}")
            for needed in step.needs:
                if needed not in self.steps:
                    raise ValueError(f"steps.{name}.needs: '{needed}' is not a step of this model")
            if isinstance(step.foreach, str):
                kind, _, what = step.foreach.partition(".")
                declared = self.params.get("properties", {}) if kind == "params" else self.inputs
                if what not in declared:
                    raise ValueError(f"steps.{name}.foreach: this model declares no {step.foreach}")
            condition = step.condition
            if condition is not None and condition.param not in self.params.get("properties", {}):
                raise ValueError(f"steps.{name}.when: this model declares no parameter '{condition.param}'")
        cycle = _cycle(self.steps)
        if cycle:
            raise ValueError("steps: they need each other in a circle: " + " -> ".join(cycle))
        for name in self.step_order():
            self._check_chain(name)
        return self

    def _check_chain(self, name: str) -> None:
        """A step chained item by item fans out over the same items as the steps it is chained to."""
        step = self.steps[name]
        for needed in step.needed(Need.ITEM):
            theirs = self.fan_out(needed)
            if theirs is None:
                raise ValueError(
                    f"steps.{name}.needs: '{needed}' has no `foreach`, so it has no items to chain to; "
                    f"write `needs: [{needed}]`"
                )
            ours = self.fan_out(name)
            if ours != theirs:
                raise ValueError(
                    f"steps.{name}.foreach: chained item by item to '{needed}', it must fan out over the same "
                    f"items ({theirs!r}); leave `foreach` out to take them from '{needed}'"
                )

    @property
    def is_pipeline(self) -> bool:
        return bool(self.steps)

    def fan_out(self, name: str) -> list[Any] | str | None:
        """What step ``name`` fans out over: its ``foreach``, or, left out, that of the first step
        it is chained to item by item; None for a step that runs once."""
        step = self.steps[name]
        if step.foreach is not None:
            return step.foreach
        chained = step.needed(Need.ITEM)
        return self.fan_out(chained[0]) if chained else None

    def in_classes(self, classes: Mapping[str, Resources]) -> ModelSpec:
        """This spec with the resource classes its resources and steps name filled in from
        ``classes`` (``resource_classes:`` of modelrunner.yaml as it is now); see Resources.in_class."""
        if not self.resource_classes():
            return self
        data = self.model_dump(by_alias=True)
        data["resources"] = self.resources.in_class(classes).model_dump(by_alias=True)
        for name, step in self.steps.items():
            data["steps"][name]["resources"] = step.resources.in_class(classes).model_dump(by_alias=True)
        # Validated anew rather than copied: a copy would keep what was cached from the old values.
        return ModelSpec.model_validate(data)

    def resource_classes(self) -> list[tuple[str, str]]:
        """(field, class) of every resource class this model names."""
        named = [("resources.class", self.resources.resource_class)]
        named += [(f"steps.{name}.resources.class", step.resources.resource_class) for name, step in self.steps.items()]
        return [(where, name) for where, name in named if name is not None]

    def part(self, step: str | None) -> StepSpec:
        """What one run executes: a step of the pipeline, or the model's own command."""
        if step is None:
            return self._whole
        chosen = self.steps[step]
        if chosen.environment is None and self.environment is not None:
            return chosen.model_copy(update={"environment": self.environment})
        return chosen

    @functools.cached_property
    def _whole(self) -> StepSpec:
        assert not self.steps, "a pipeline runs its steps, never itself"
        return StepSpec(
            command=self.command,
            notebook=self.notebook,
            image=self.image,
            environment=self.environment,
            resources=self.resources,
            retries=self.retries,
            outputs=self.outputs,
        )

    def step_order(self) -> list[str]:
        """Step names, each after the steps it needs (ties in the order written)."""
        order: list[str] = []
        while len(order) < len(self.steps):
            order.extend(
                name
                for name, step in self.steps.items()
                if name not in order and all(needed in order for needed in step.needs)
            )
        return order

    def programs(self) -> list[tuple[str, list[str]]]:
        """(field, command) of every command this model starts in its own folder (a command
        given to an image runs inside the image, so it is not one of them)."""
        parts = [(f"steps.{name}.command", step) for name, step in self.steps.items()]
        if not self.steps:
            parts = [("command", self.part(None))]
        return [(field, part.command) for field, part in parts if part.command is not None and part.image is None]


def _non_empty_program(value: list[str]) -> list[str]:
    if not value[0].strip():
        raise ValueError("the first argument (the program) is empty")
    return value


def _file_patterns(value: list[str]) -> list[str]:
    for pattern in value:
        if not pattern.strip() or pattern.startswith("/") or ".." in PurePosixPath(pattern).parts:
            raise ValueError(f"{pattern!r} must be a relative pattern inside the model folder")
    return value


def _relative_file(value: str) -> str:
    if value.startswith("/") or ".." in Path(value).parts or not value.strip():
        raise ValueError("must be a relative path inside the model folder")
    return value


def _check_form(command: list[str] | None, notebook: str | None, image: str | None) -> None:
    """A model (or step) is started in one form: a command, a notebook, or an image (whose own
    command ``command`` may replace)."""
    if notebook is not None and (command is not None or image is not None):
        raise ValueError("notebook: a notebook is run by itself; leave out `command` and `image`")
    if command is None and notebook is None and image is None:
        raise ValueError("command: is required (or `notebook` or `image`)")


def _retries_of(value: Any) -> Any:
    # `retries: 2` is the common case: retry failed attempts twice, lost ones as by default.
    if isinstance(value, int) and not isinstance(value, bool):
        return {"failed": value}
    return value


def _cycle(steps: dict[str, StepSpec]) -> list[str]:
    """A circle of needs (as a path that returns to its start), or [] when there is none."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> list[str]:
        if name in visiting:
            return [*visiting[visiting.index(name) :], name]
        if name in done or name not in steps:
            return []
        visiting.append(name)
        for needed in steps[name].needs:
            found = visit(needed)
            if found:
                return found
        visiting.pop()
        done.add(name)
        return []

    for name in steps:
        found = visit(name)
        if found:
            return found
    return []


def load_model_spec(folder: Path, shown_as: str) -> tuple[ModelSpec | None, list[SpecProblem]]:
    """Read ``folder/model.yaml``; return the spec, or None and every problem found.

    ``shown_as`` is how the file is named in problems (a path relative to the workspace).
    """
    path = folder / MODEL_FILE
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        return None, [SpecProblem(shown_as, where, f"not valid YAML: {getattr(exc, 'problem', exc)}")]
    except OSError as exc:
        return None, [SpecProblem(shown_as, "", f"cannot be read: {exc.strerror}")]
    if not isinstance(raw, dict):
        return None, [SpecProblem(shown_as, "", "must be a mapping of fields (name, command, params, ...)")]
    try:
        spec = ModelSpec.model_validate(raw)
    except ValidationError as exc:
        return None, [SpecProblem(shown_as, *_field_and_message(err)) for err in exc.errors()]
    problems = []
    if spec.name != folder.name:
        problems.append(SpecProblem(shown_as, "name", f"'{spec.name}' differs from the folder name '{folder.name}'"))
    return (None, problems) if problems else (spec, [])


def _field_and_message(error: Any) -> tuple[str, str]:
    field = ".".join(str(p) for p in error["loc"])
    message = message_of(error)
    if not field:
        # Checks of the whole spec name the field they are about first: "steps.a.needs: ...".
        named = re.match(r"^([a-z0-9_.-]+): (.*)$", message, re.DOTALL)
        return (named.group(1), named.group(2)) if named else ("(top)", message)
    return field, message


def message_of(error: Any) -> str:
    """A pydantic error as a user reads it."""
    if error["type"] == "missing":
        return "is required"
    if error["type"] == "extra_forbidden":
        return "is not a known field"
    if error["type"] == "union_tag_invalid":
        context = error["ctx"]
        return f"{context['discriminator'].strip(chr(39))} {context['tag']!r} is not one of {context['expected_tags']}"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def program_problems(spec: ModelSpec, folder: Path, shown_as: str) -> list[SpecProblem]:
    """A problem for each program that cannot be started: ``python``/``python3`` always can; a
    path with a ``/`` must exist (relative to the model folder), be executable and be part of
    the model (not in a folder the copy leaves out); a bare name must be found on PATH (the
    model's own folder is not searched, as when the model runs). And one for each environment
    that cannot be built here (see ``environment_problem``)."""
    problems = []
    for field, command in spec.programs():
        message = _program_problem(command[0], folder)
        if message:
            problems.append(SpecProblem(shown_as, field, message))
    parts = {f"steps.{name}.environment": spec.part(name) for name in spec.steps} or {"environment": spec.part(None)}
    for field, part in parts.items():
        if part.environment is None:
            continue
        if part.image is not None:
            said: str | None = "an image brings its own environment; install the packages into the image"
        else:
            said = environment_problem(part.environment, folder)
        if said:
            problems.append(SpecProblem(shown_as, field, said))
    return problems


def _program_problem(program: str, folder: Path) -> str | None:
    if program in PYTHON_PROGRAMS:
        return None
    if "/" in program:
        path = folder / program
        if not path.is_file():
            return f"the program {program!r} does not exist in the model folder"
        if not os.access(path, os.X_OK):
            return f"the program {program!r} is not executable (chmod +x it)"
        reason = left_out(folder, PurePosixPath(program))
        if reason is not None:
            # A model's own .venv, say, is not copied: the attempt could not start it.
            return (
                f"the program {program!r} is not part of the model: {reason}; "
                "use `environment: requirements.txt` (or pyproject.toml, ...) for its packages"
            )
        return None
    if shutil.which(program):
        return None
    hint = f"; to run the file in the model folder, write './{program}'" if (folder / program).is_file() else ""
    if program in ("Rscript", "R") and not hint:
        hint = ": R is not installed here (Debian: apt-get install r-base-core r-cran-jsonlite)"
    return f"the program {program!r} is not found on PATH{hint}"
