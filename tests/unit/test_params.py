"""Parameters: validation naming the failing field, defaults, command-line values, canonical JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelrunner.errors import InvalidInput, Problem
from modelrunner.spec.param_limits import ParamLimits, check_param_sizes
from modelrunner.spec.params import canonical_json, parse_cli_value, validate_params

pytestmark = pytest.mark.store_free

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "n": {"type": "integer", "default": 0, "minimum": 0},
        "label": {"type": "string", "default": ""},
        "rate": {"type": "number"},
        "region": {
            "type": "object",
            "properties": {"code": {"type": "string"}, "weight": {"type": "number", "default": 1}},
            "required": ["code"],
            "additionalProperties": False,
        },
        "tags": {"type": "array", "items": {"type": "string"}, "default": []},
    },
    "required": ["rate"],
}


def failing_field(schema: dict[str, Any], params: Any) -> str:
    with pytest.raises(InvalidInput) as raised:
        validate_params(schema, params)
    field = str(raised.value.details["field"])
    assert field in raised.value.message
    return field


def test_defaults_are_filled_in() -> None:
    assert validate_params(SCHEMA, {"rate": 0.5}) == {"n": 0, "label": "", "rate": 0.5, "tags": []}


def test_given_values_win_over_defaults() -> None:
    assert validate_params(SCHEMA, {"rate": 1, "n": 3, "label": "x"})["n"] == 3


def test_defaults_are_filled_in_nested_objects_that_are_given() -> None:
    validated = validate_params(SCHEMA, {"rate": 1, "region": {"code": "BE"}})

    assert validated["region"] == {"code": "BE", "weight": 1}


def test_the_callers_object_is_not_changed() -> None:
    given = {"rate": 1}

    validate_params(SCHEMA, given)

    assert given == {"rate": 1}


def test_defaults_are_copies() -> None:
    first = validate_params(SCHEMA, {"rate": 1})
    first["tags"].append("changed")

    assert validate_params(SCHEMA, {"rate": 1})["tags"] == []


def test_empty_schema_accepts_an_empty_object() -> None:
    assert validate_params({"type": "object"}, {}) == {}


def test_wrong_type_names_the_field() -> None:
    assert failing_field(SCHEMA, {"rate": 1, "n": "three"}) == "params.n"


def test_out_of_range_names_the_field() -> None:
    assert failing_field(SCHEMA, {"rate": 1, "n": -1}) == "params.n"


def test_missing_required_names_the_missing_field() -> None:
    assert failing_field(SCHEMA, {"n": 1}) == "params.rate"


def test_missing_required_in_a_nested_object() -> None:
    assert failing_field(SCHEMA, {"rate": 1, "region": {"weight": 2}}) == "params.region.code"


def test_wrong_type_in_a_nested_object() -> None:
    assert failing_field(SCHEMA, {"rate": 1, "region": {"code": 32}}) == "params.region.code"


def test_wrong_item_in_an_array_names_its_index() -> None:
    assert failing_field(SCHEMA, {"rate": 1, "tags": ["a", 2]}) == "params.tags.1"


def test_unknown_parameter_names_it() -> None:
    assert failing_field(SCHEMA, {"rate": 1, "nn": 3}) == "params.nn"


def test_unknown_property_of_a_nested_closed_object_names_it() -> None:
    assert failing_field(SCHEMA, {"rate": 1, "region": {"code": "BE", "colour": "red"}}) == "params.region.colour"


def test_explicit_additional_properties_false_names_the_unknown_parameter() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "additionalProperties": False}

    assert failing_field(schema, {"n": 1, "m": 2}) == "params.m"


def test_every_problem_is_listed_at_once_each_unknown_parameter_on_its_own() -> None:
    with pytest.raises(InvalidInput) as raised:
        validate_params(SCHEMA, {"n": -1, "tags": ["a", 2], "region": {"colour": "red"}, "nn": 3, "m": 4})

    known = "its parameters: n, label, rate, region, tags"
    assert raised.value.problems == [
        Problem("params.m", f"is not a parameter of this model ({known})"),
        Problem("params.n", "-1 is less than the minimum of 0"),
        Problem("params.nn", f"is not a parameter of this model ({known})"),
        Problem("params.rate", "is required"),
        Problem("params.region.code", "is required"),
        Problem("params.region.colour", "is not a field of params.region (its fields: code, weight)"),
        Problem("params.tags.1", "2 is not of type 'string'"),
    ]
    assert raised.value.message.splitlines() == [str(problem) for problem in raised.value.problems]


def test_every_value_over_a_size_limit_is_listed() -> None:
    limits = ParamLimits(max_params=10, max_string_length=3, max_list_length=2)

    with pytest.raises(InvalidInput) as raised:
        check_param_sizes({"a": "long", "b": [1, 2, 3], "c": {"d": ["ok", "longer"]}, "ok": "abc"}, limits)

    assert [problem.field for problem in raised.value.problems] == ["params.a", "params.b", "params.c.d.1"]
    assert "max_param_list_length" in raised.value.problems[1].message


def test_a_schema_may_allow_extra_parameters() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "additionalProperties": True}

    assert validate_params(schema, {"n": 1, "extra": [1, 2]}) == {"n": 1, "extra": [1, 2]}


def test_pattern_properties_allow_matching_names() -> None:
    schema = {
        "type": "object",
        "patternProperties": {"^w_": {"type": "number"}},
        "additionalProperties": False,
    }

    assert validate_params(schema, {"w_a": 1}) == {"w_a": 1}
    assert failing_field(schema, {"w_a": 1, "x": 2}) == "params.x"


@pytest.mark.parametrize("params", [[1, 2], "n=1", None, 3])
def test_params_must_be_an_object(params: Any) -> None:
    assert failing_field(SCHEMA, params) == "params"


def test_integral_float_is_an_integer() -> None:
    assert validate_params(SCHEMA, {"rate": 1, "n": 2.0})["n"] == 2


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("label", "42", "42"),
        ("label", "true", "true"),
        ("n", "42", 42),
        ("rate", "0.25", 0.25),
        ("tags", '["a", "b"]', ["a", "b"]),
        ("region", '{"code": "BE"}', {"code": "BE"}),
        ("rate", "not json", "not json"),
        ("undeclared", "true", True),
        ("undeclared", "plain words", "plain words"),
    ],
)
def test_parse_cli_value(name: str, text: str, value: Any) -> None:
    assert parse_cli_value(SCHEMA, name, text) == value


def test_parse_cli_value_for_a_string_only_type_list() -> None:
    schema = {"type": "object", "properties": {"code": {"type": ["string"]}}}

    assert parse_cli_value(schema, "code", "007") == "007"


def test_canonical_json_ignores_key_order() -> None:
    a = {"b": 1, "a": {"y": [1, 2], "x": "é"}}
    b = {"a": {"x": "é", "y": [1, 2]}, "b": 1}

    assert canonical_json(a) == canonical_json(b) == '{"a":{"x":"é","y":[1,2]},"b":1}'


def test_canonical_json_writes_integral_floats_as_integers() -> None:
    assert canonical_json({"n": 2.0, "xs": [1.0, 2.5]}) == canonical_json({"n": 2, "xs": [1, 2.5]})
    assert canonical_json({"x": 2.5}) != canonical_json({"x": 2})


def test_canonical_json_keeps_distinct_values_distinct() -> None:
    values = [{"x": True}, {"x": 1}, {"x": "1"}, {"x": None}, {"x": [1]}, {"x": {}}]

    assert len({canonical_json(v) for v in values}) == len(values)


def test_canonical_json_round_trips() -> None:
    value = {"z": [{"b": 1, "a": None}], "a": "text"}

    assert json.loads(canonical_json(value)) == value
