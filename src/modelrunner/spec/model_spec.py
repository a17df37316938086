"""The ``model.yaml`` schema and its loading, with problems named by file and field."""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modelrunner.spec.duration import parse_duration
from modelrunner.spec.names import check_name, check_names

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
    """What one attempt needs; ``timeout`` is seconds (or ``"30m"``, ``"2h"``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu: float = Field(default=1, gt=0)
    memory: str | None = None
    timeout: float | None = Field(default=None, gt=0)

    @field_validator("timeout", mode="before")
    @classmethod
    def _parse_duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @property
    def slots(self) -> int:
        return max(1, math.ceil(self.cpu))


class Retries(BaseModel):
    """How many more attempts a run gets after a failed attempt and after a lost one."""

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


class ModelSpec(BaseModel):
    """A model as its author wrote it in ``model.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    title: str = ""
    description: str = ""
    command: list[str] = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    resources: Resources = Resources()
    retries: Retries = Retries()
    outputs: list[OutputDecl] = Field(default_factory=list)
    inputs: dict[str, str] = Field(
        default_factory=dict, description="Input name -> dataset name; the files appear in MODELRUNNER_INPUTS/<input>/"
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return check_name(value)

    @field_validator("inputs", mode="before")
    @classmethod
    def _valid_input_names(cls, value: Any) -> Any:
        if isinstance(value, dict):
            check_names(value, "input")
        return value

    @field_validator("command")
    @classmethod
    def _non_empty_arguments(cls, value: list[str]) -> list[str]:
        if not value[0].strip():
            raise ValueError("the first argument (the program) is empty")
        return value

    @field_validator("retries", mode="before")
    @classmethod
    def _retries_shorthand(cls, value: Any) -> Any:
        # `retries: 2` is the common case: retry failed attempts twice, lost ones as by default.
        if isinstance(value, int) and not isinstance(value, bool):
            return {"failed": value}
        return value

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
        return None, [
            SpecProblem(shown_as, ".".join(str(p) for p in err["loc"]) or "(top)", message_of(err))
            for err in exc.errors()
        ]
    problems = []
    if spec.name != folder.name:
        problems.append(SpecProblem(shown_as, "name", f"'{spec.name}' differs from the folder name '{folder.name}'"))
    return (None, problems) if problems else (spec, [])


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


def program_problem(spec: ModelSpec, folder: Path, shown_as: str) -> SpecProblem | None:
    """A problem if the model's program cannot be started: ``python``/``python3`` always can; a
    path with a ``/`` must exist (relative to the model folder) and be executable; a bare name
    must be found on PATH (the model's own folder is not searched, as when the model runs)."""
    program = spec.command[0]
    if program in PYTHON_PROGRAMS:
        return None
    if "/" in program:
        path = folder / program
        if not path.is_file():
            return SpecProblem(shown_as, "command", f"the program {program!r} does not exist in the model folder")
        if not os.access(path, os.X_OK):
            return SpecProblem(shown_as, "command", f"the program {program!r} is not executable (chmod +x it)")
        return None
    if shutil.which(program):
        return None
    hint = f"; to run the file in the model folder, write './{program}'" if (folder / program).is_file() else ""
    return SpecProblem(shown_as, "command", f"the program {program!r} is not found on PATH{hint}")
