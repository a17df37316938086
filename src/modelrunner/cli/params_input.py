"""Parameters from the command line: a JSON or YAML file, overridden by ``-p name=value``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
import yaml

from modelrunner.errors import ModelrunnerError


def split_assignments(values: list[str] | None) -> list[str] | None:
    """Typer callback for ``-p``: each value must look like ``name=value`` (a usage error if not)."""
    for value in values or []:
        name, sep, _ = value.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{value!r} is not name=value (e.g. -p rate=0.3)")
    return values


def read_params_file(path: Path | None) -> dict[str, Any]:
    """The object in a ``.json`` or ``.yaml``/``.yml`` file; {} without a file."""
    if path is None:
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelrunnerError(f"cannot read the params file {path}: {exc.strerror or exc}") from exc
    try:
        loaded: Any = yaml.safe_load(text) if path.suffix.lower() in {".yaml", ".yml"} else json.loads(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "YAML" if path.suffix.lower() in {".yaml", ".yml"} else "JSON"
        raise ModelrunnerError(f"the params file {path} is not valid {kind}: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ModelrunnerError(f"the params file {path} must hold an object of name: value pairs")
    return loaded


def combine(schema: dict[str, Any], from_file: dict[str, Any], assignments: list[str] | None) -> dict[str, Any]:
    """``from_file`` with each ``name=value`` applied on top, values typed by the model's schema
    (``-p r0=2.5`` gives a number; ``-p label=007`` stays a string when the schema says string)."""
    from modelrunner.spec.params import parse_cli_value  # jsonschema is slow to import; only when needed

    params = dict(from_file)
    for assignment in assignments or []:
        name, _, text = assignment.partition("=")
        name = name.strip()
        params[name] = parse_cli_value(schema, name, text)
    return params
