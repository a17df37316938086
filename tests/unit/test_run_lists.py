"""What a list of runs shows of each run's parameters, what a parameter filter's text means, and
which chart series get the second y axis."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from modelrunner.engine.run_reads import param_filters
from modelrunner.errors import InvalidInput
from modelrunner.web.output_preview import ChartChoice, Table, with_right_axis
from modelrunner.web.run_lists import telling_params

pytestmark = pytest.mark.store_free


@dataclass(frozen=True)
class Run:
    id: int
    model_name: str
    params: dict[str, Any]


def shown(runs: list[Run]) -> dict[int, str]:
    return {run_id: str(params) for run_id, params in telling_params(runs).items()}


def test_the_parameters_that_differ_between_a_models_runs() -> None:
    runs = [
        Run(1, "seir", {"r0": 2.5, "days": 90, "region": "north"}),
        Run(2, "seir", {"r0": 3.0, "days": 90, "region": "north"}),
        Run(3, "seir", {"r0": 3.0, "days": 90, "region": "south"}),
        Run(4, "load", {"scale": 1, "feeder": "a"}),
    ]
    assert shown(runs) == {
        1: "r0=2.5, region=north",
        2: "r0=3.0, region=north",
        3: "r0=3.0, region=south",
        4: "scale=1, feeder=a",  # alone of its model: its first parameters
    }


def test_a_parameter_one_run_lacks_differs_and_equal_objects_do_not() -> None:
    runs = [
        Run(1, "m", {"a": {"x": 1, "y": 2}, "b": [1, 2]}),
        Run(2, "m", {"a": {"y": 2, "x": 1}, "b": [1, 2], "c": None}),
    ]
    assert shown(runs) == {1: "c=—", 2: "c=null"}


def test_many_differing_parameters_are_cut_to_a_few_and_long_values_shortened() -> None:
    names = [f"p{i}" for i in range(9)]
    runs = [Run(1, "m", dict.fromkeys(names, 1)), Run(2, "m", {**dict.fromkeys(names, 2), "p0": "x" * 50})]
    assert shown(runs)[1] == "p0=1, p1=1, p2=1, p3=1, p4=1, p5=1, +3 more"
    assert shown(runs)[2].startswith("p0=" + "x" * 31 + "…, p1=2")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("r0=2", 2),
        ("r0=2.5", 2.5),
        ("smooth=true", True),
        ('label="2"', "2"),
        ("region=north", "north"),
        ("region= north ", "north"),
        ("tags=[1, 2]", "[1, 2]"),  # no list: the text
        ("n=1e400", "1e400"),  # no finite number: the text
        ("n=NaN", "NaN"),
        ("n=99999999999999999999", "99999999999999999999"),  # beyond 64 bits: the text
        ("formula=a=b", "a=b"),  # the first = ends the name
    ],
)
def test_a_filter_value_is_json_when_it_reads_as_a_scalar(text: str, value: Any) -> None:
    [(name, found)] = param_filters([text]).items()
    assert found == value and type(found) is type(value)
    assert name == text.split("=")[0].strip()


@pytest.mark.parametrize("text", ["north", "=north", " =1", 'label="\\u0000"'])
def test_a_filter_without_a_name_or_with_what_no_parameter_holds_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        param_filters([text])
    assert refused.value.details["field"] == "param"


def table(**columns: list[float]) -> Table:
    names = list(columns)
    rows = [[str(columns[name][i]) for name in names] for i in range(len(columns[names[0]]))]
    return Table(names, rows, names, truncated=False)


def test_a_series_far_smaller_than_the_largest_goes_on_the_right_axis() -> None:
    power = table(hour=[0, 1, 2], load_kw=[5000, 6500, 4000], temperature_c=[12, 20, -9], price=[400, 900, 300])
    choice = power.chart(None, [])
    assert choice == ChartChoice("hour", ["load_kw", "temperature_c", "price"])
    assert with_right_axis(choice, [power], None).right == ["temperature_c"]  # 20 * 20 < 6500 <= 900 * 20
    # The reader's choice stands, even an empty one; a series not drawn is never on an axis.
    assert with_right_axis(choice, [power], []).right == []
    assert with_right_axis(choice, [power], ["price", "hour"]).right == ["price"]


def test_two_runs_share_the_axes_their_largest_values_decide() -> None:
    calm = table(day=[0, 1], cases=[10, 12], deaths=[0, 1])
    wild = table(day=[0, 1], cases=[10, 9000], deaths=[0, 40])
    choice = calm.chart(None, [])
    assert with_right_axis(choice, [calm], None).right == []
    assert with_right_axis(choice, [calm, wild], None).right == ["deaths"]
