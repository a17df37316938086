"""Parameter validation against a model's JSON Schema, with defaults filled in."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
from jsonschema import validators

from modelrunner.errors import InvalidInput


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
    """Return ``params`` validated with defaults filled in, or raise InvalidInput naming the field.

    A parameter the schema does not declare is rejected (a typo must not silently run with the
    defaults) unless the schema says otherwise with ``additionalProperties`` or its relatives.
    """
    if not isinstance(params, dict):
        raise InvalidInput("params must be a JSON object", field="params")
    if not _OPEN_OBJECT_KEYWORDS & schema.keys():
        schema = {**schema, "additionalProperties": False}
    filled = copy.deepcopy(params)
    errors = sorted(_Validator(schema).iter_errors(filled), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        field = ".".join(str(p) for p in first.absolute_path)
        if first.validator == "required":
            # jsonschema reports a missing property at the parent; name the property itself.
            missing = first.message.split("'")[1] if "'" in first.message else ""
            field = ".".join(p for p in (field, missing) if p)
        if first.validator == "additionalProperties" and isinstance(first.instance, dict):
            # Reported at the parent object too; name the first property it does not declare.
            declared = first.schema.get("properties", {})
            patterns = list(first.schema.get("patternProperties", {}))
            extra = next(
                (
                    str(key)
                    for key in first.instance
                    if key not in declared and not any(re.search(p, str(key)) for p in patterns)
                ),
                "",
            )
            field = ".".join(p for p in (field, extra) if p)
        where = f"params.{field}" if field else "params"
        raise InvalidInput(f"{where}: {first.message}", field=where)
    return filled


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
