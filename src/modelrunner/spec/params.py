"""Parameter validation against a model's JSON Schema, with defaults filled in."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
from jsonschema import validators

from modelrunner.errors import InvalidInput, Problem
from modelrunner.spec.file_params import reference_problems


def _fill_defaults(validator_class: Any) -> Any:
    # The extension the jsonschema documentation recommends: set defaults while validating.
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator: Any, properties: dict[str, Any], instance: Any, schema: Any) -> Iterator[Any]:
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if isinstance(subschema, dict) and "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


_Validator = _fill_defaults(jsonschema.Draft202012Validator)
# Keywords with which a schema says what to do with properties it does not list.
_OPEN_OBJECT_KEYWORDS = {"additionalProperties", "patternProperties", "unevaluatedProperties"}


def validate_params(schema: dict[str, Any], params: Any) -> dict[str, Any]:
    """Return ``params`` validated with defaults filled in, or raise InvalidInput listing every
    problem (``problems``), each naming its field (``params.<name>``), sorted by field.

    A parameter the schema does not declare is a problem (a typo must not silently run with the
    defaults) unless the schema says otherwise with ``additionalProperties`` or its relatives.
    """
    filled, problems = check_params(schema, params)
    if problems:
        raise InvalidInput.of(problems)
    return filled


def check_params(schema: dict[str, Any], params: Any) -> tuple[dict[str, Any], list[Problem]]:
    """``params`` with defaults filled in, and every problem with them (none: they are valid)."""
    if not isinstance(params, dict):
        return {}, [Problem("params", "must be a JSON object")]
    if not _OPEN_OBJECT_KEYWORDS & schema.keys():
        schema = {**schema, "additionalProperties": False}
    filled = copy.deepcopy(params)
    errors = sorted(_Validator(schema).iter_errors(filled), key=lambda e: [str(p) for p in e.absolute_path])
    problems = [problem for error in errors for problem in _problems_of(error)]
    if not problems:
        problems = [Problem(field, what) for field, what in reference_problems(schema, filled)]
    return filled, sorted(problems, key=lambda p: p.field.split("."))


def _problems_of(error: jsonschema.ValidationError) -> list[Problem]:
    where = ["params", *(str(p) for p in error.absolute_path)]
    if error.validator == "required":
        # jsonschema reports a missing property at the parent; name the property itself.
        missing = error.message.split("'")[1] if "'" in error.message else ""
        return [Problem(".".join([*where, missing] if missing else where), "is required")]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        # Reported once at the parent for all of them; name each property it does not declare.
        declared = error.schema.get("properties", {})
        patterns = list(error.schema.get("patternProperties", {}))
        known = ", ".join(str(name) for name in declared) or "none"
        if len(where) == 1:
            what = f"is not a parameter of this model (its parameters: {known})"
        else:
            what = f"is not a field of {'.'.join(where)} (its fields: {known})"
        return [
            Problem(".".join([*where, str(key)]), what)
            for key in error.instance
            if key not in declared and not any(re.search(p, str(key)) for p in patterns)
        ]
    return [Problem(".".join(where), error.message)]


def parse_cli_value(schema: dict[str, Any], name: str, text: str) -> Any:
    """Turn ``name=text`` from a command line into the JSON value the schema expects."""
    declared = schema.get("properties", {}).get(name, {})
    kinds = declared.get("type")
    if kinds == "string" or (isinstance(kinds, list) and kinds == ["string"]):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces; integral floats written as integers (2.0 == 2)."""
    return json.dumps(_normalise(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _normalise(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _normalise(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalise(item) for item in value]
    return value
