"""A model's JSON Schema as HTML form fields, and a submitted form back into parameters.

The HTML constraints (min, max, step, required, lengths) help the browser check early; the server
validates again with the model's schema (``spec/params.py``), which has the last word.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelrunner.errors import Problem
from modelrunner.spec.params import check_params

_SIMPLE = {"string", "number", "integer", "boolean"}


@dataclass(frozen=True)
class Choice:
    value: str  # as the form sends it
    label: str
    selected: bool


@dataclass(frozen=True)
class Field:
    """One parameter as a form control. ``widget`` is one of number, checkbox, select, text, file
    (a file parameter: an upload), list (comma-separated simple values) or json (a textarea with a
    JSON value)."""

    name: str
    label: str
    widget: str
    value: str = ""
    checked: bool = False
    help: str = ""
    required: bool = False
    attrs: dict[str, str] = field(default_factory=dict)  # extra HTML attributes (min, max, step, ...)
    choices: tuple[Choice, ...] = ()
    error: str = ""


def fields_of(
    schema: Mapping[str, Any], values: Mapping[str, str] | None = None, errors: Mapping[str, str] | None = None
) -> list[Field]:
    """The form fields of a parameter schema, in its order; ``values`` are the texts a user sent
    (they replace the defaults), ``errors`` the messages to show next to fields."""
    required = set(schema.get("required", []))
    errors = errors or {}
    return [
        _field(name, prop if isinstance(prop, Mapping) else {}, name in required, values, errors.get(name, ""))
        for name, prop in schema.get("properties", {}).items()
    ]


def params_of(schema: Mapping[str, Any], form: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The parameters a submitted form gives, and the fields whose text is not of their type
    (name -> message). Empty fields are left out, so the schema's defaults apply."""
    params: dict[str, Any] = {}
    errors: dict[str, str] = {}
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        prop = prop if isinstance(prop, Mapping) else {}
        kind = _kind(prop)
        text = form.get(name)
        if kind == "boolean" and "enum" not in prop:
            params[name] = text is not None  # an unchecked checkbox sends nothing
            continue
        if text is None or (text.strip() == "" and not (kind == "string" and (name in required or "default" in prop))):
            continue
        try:
            params[name] = _parse(prop, kind, text)
        except ValueError as exc:
            errors[name] = str(exc)
    if errors:
        # The form goes back for a fix: say at once what the schema finds wrong with the rest too.
        _, problems = check_params(dict(schema), params)
        by_field, _ = errors_by_field(schema, problems)
        errors = {**{name: text for name, text in by_field.items() if name not in errors}, **errors}
    return params, errors


def errors_by_field(schema: Mapping[str, Any], problems: Sequence[Problem]) -> tuple[dict[str, str], list[str]]:
    """The messages to show next to each field of the form (a problem deep in a field's value is
    its field's), and those of no field, as lines to show above the form."""
    fields = schema.get("properties", {})
    by_field: dict[str, list[str]] = {}
    others: list[str] = []
    for problem in problems:
        path = problem.field.removeprefix("params.").split(".") if problem.field.startswith("params.") else []
        if path and path[0] in fields:
            inner = ".".join(path[1:])
            by_field.setdefault(path[0], []).append(f"{inner}: {problem.message}" if inner else problem.message)
        else:
            others.append(str(problem))
    return {name: "; ".join(messages) for name, messages in by_field.items()}, others


def _field(name: str, prop: Mapping[str, Any], required: bool, values: Mapping[str, str] | None, error: str) -> Field:
    kind = _kind(prop)
    label = str(prop.get("title") or name)
    help_text = str(prop.get("description", ""))
    default = prop.get("default")
    sent = values.get(name) if values is not None else None
    common: dict[str, Any] = {"name": name, "label": label, "help": help_text, "required": required, "error": error}
    if "enum" in prop:
        current = sent if values is not None else (_text(default) if default is not None else None)
        choices = tuple(Choice(_text(v), _text(v), _text(v) == current) for v in prop["enum"])
        return Field(widget="select", choices=choices, **common)
    if kind == "boolean":
        checked = (sent is not None) if values is not None else bool(default)
        return Field(widget="checkbox", checked=checked, **{**common, "required": False})
    if prop.get("format") == "file":
        return Field(widget="file", **common)
    value = sent if sent is not None else ("" if default is None else _text(default))
    if kind in ("number", "integer"):
        return Field(widget="number", value=value, attrs=_number_attrs(prop, kind), **common)
    if kind == "string":
        attrs = {}
        if "minLength" in prop:
            attrs["minlength"] = str(prop["minLength"])
        if "maxLength" in prop:
            attrs["maxlength"] = str(prop["maxLength"])
        return Field(widget="text", value=value, attrs=attrs, **common)
    if kind == "array" and _kind(prop.get("items", {})) in _SIMPLE:
        if sent is None and isinstance(default, list):
            value = ", ".join(_text(v) for v in default)
        hint = "Values separated by commas."
        return Field(widget="list", value=value, **{**common, "help": f"{help_text} {hint}".strip()})
    if sent is None and default is not None:
        value = json.dumps(default)
    return Field(widget="json", value=value, **{**common, "help": f"{help_text} A JSON value.".strip()})


def _kind(prop: Mapping[str, Any]) -> str:
    kinds = prop.get("type")
    if isinstance(kinds, list):
        kinds = next((k for k in kinds if k != "null"), None)
    if kinds is None and "enum" in prop:
        return "enum"
    return str(kinds) if kinds is not None else "json"


def _number_attrs(prop: Mapping[str, Any], kind: str) -> dict[str, str]:
    attrs: dict[str, str] = {}
    if "minimum" in prop:
        attrs["min"] = _text(prop["minimum"])
    if "maximum" in prop:
        attrs["max"] = _text(prop["maximum"])
    step = prop.get("multipleOf")
    attrs["step"] = _text(step) if step is not None else ("1" if kind == "integer" else "any")
    return attrs


def _parse(prop: Mapping[str, Any], kind: str, text: str) -> Any:
    if "enum" in prop:
        for option in prop["enum"]:
            if _text(option) == text:
                return option
        raise ValueError("choose one of the listed values")
    if kind == "array":
        item = prop.get("items", {})
        item_kind = _kind(item) if isinstance(item, Mapping) else "json"
        if item_kind in _SIMPLE:
            return [_scalar(item_kind, part.strip()) for part in text.split(",") if part.strip()]
    if kind in _SIMPLE:
        return _scalar(kind, text)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg}") from exc


def _scalar(kind: str, text: str) -> Any:
    text = text.strip() if kind != "string" else text
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"'{text}' is not a whole number") from None
    if kind == "number":
        try:
            return int(text)  # as typed: "-1" is -1 in messages, not -1.0 (the cache key is the same)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"'{text}' is not a number") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(f"'{text}' is not a finite number")
        return number
    if kind == "boolean":
        if text.lower() in ("true", "yes", "1", "on"):
            return True
        if text.lower() in ("false", "no", "0", "off"):
            return False
        raise ValueError(f"'{text}' is neither true nor false")
    return text


def _text(value: Any) -> str:
    """A JSON value as a form shows it: strings as they are, the rest as JSON (true, 1.5)."""
    return value if isinstance(value, str) else json.dumps(value)
