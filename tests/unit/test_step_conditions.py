"""A step's `when:`: a tiny grammar on the parameters, read without eval, refused at load when wrong."""

from __future__ import annotations

from typing import Any

import pytest

from modelrunner.spec.step_conditions import StepCondition

pytestmark = pytest.mark.store_free


@pytest.mark.parametrize(
    ("text", "params", "runs"),
    [
        ("params.daily", {"daily": True}, True),
        ("params.daily", {"daily": False}, False),
        ("params.daily", {}, False),
        ("params.corpora", {"corpora": []}, False),
        ("not params.daily", {"daily": False}, True),
        ("params.region == uk", {"region": "uk"}, True),
        ("params.region == 'uk'", {"region": "us"}, False),
        ('params.region != "uk"', {"region": "us"}, True),
        ("params.draws == 100", {"draws": 100.0}, True),
        ("params.flag == 1", {"flag": True}, False),
        ("params.flag == true", {"flag": True}, True),
        ("params.mode == null", {}, True),
        ("not params.mode == fast", {"mode": "slow"}, True),
        ("  params.region   ==   uk  ", {"region": "uk"}, True),
    ],
)
def test_a_condition_holds_as_written(text: str, params: dict[str, Any], runs: bool) -> None:
    assert StepCondition.parse(text).holds(params) is runs


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os').system('true')", "is not a condition"),
        ("params.a and params.b", "is not a condition"),
        ("inputs.cases", "is not a condition"),
        ("params.a ==", "is not a condition"),
        ("params.a == [1, 2]", "compare with one string, number"),
        ("params.a == {x: 1}", "compare with one string, number"),
        ("params.a == 'unclosed", "is not a value"),
    ],
)
def test_anything_else_is_refused_with_the_form_to_write(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StepCondition.parse(text)
