"""Steps, schedules and triggers in ``model.yaml``: what is wrong is named by its field."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_model_spec import fields, load

PIPELINE = """
name: demo
params:
  type: object
  properties:
    regions: {type: array, default: [a, b]}
inputs: {cases: cases}
steps:
  estimate: {command: [python, e.py], foreach: params.regions, retries: 2}
  summarise: {command: [python, s.py], needs: [estimate]}
  publish: {command: [python, p.py], needs: [summarise], publish: true}
"""


def test_a_pipeline_loads_with_its_steps_in_order(tmp_path: Path) -> None:
    spec, problems = load(tmp_path, PIPELINE)

    assert problems == []
    assert spec is not None and spec.is_pipeline
    assert spec.step_order() == ["estimate", "summarise", "publish"]
    assert spec.part("estimate").retries.failed == 2
    assert spec.part("publish").publish


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (
            "command: [python, x.py]\nsteps:\n  a: {command: [x]}\n",
            "steps",
            "either a `command`, `notebook` or `image`, or `steps`",
        ),
        ("steps: {}\n", "command", "is required (or `notebook`, `image`, or `steps` for a pipeline)"),
        (
            "steps:\n  a: {command: [x], needs: [b]}\n  b: {command: [x], needs: [a]}\n",
            "steps",
            "in a circle: a -> b -> a",
        ),
        ("steps:\n  a: {command: [x], needs: [nope]}\n", "steps.a.needs", "'nope' is not a step"),
        ("steps:\n  a: {command: [x], foreach: params.nope}\n", "steps.a.foreach", "declares no params.nope"),
        ("steps:\n  a: {command: [x], foreach: regions}\n", "steps.a.foreach", "'params.<name>' or 'inputs.<name>'"),
        ("steps:\n  cases: {command: [x]}\n", "steps.cases", "an input has this name too"),
        ("steps:\n  Bad: {command: [x]}\n", "steps", "step 'Bad'"),
        ("steps:\n  a: {command: [x]}\n  b: {command: [x], needs: {a: item}}\n", "steps.b.needs", "no `foreach`"),
        (
            "steps:\n  a: {command: [x], foreach: [1]}\n  b: {command: [x], foreach: [2], needs: {a: item}}\n",
            "steps.b.foreach",
            "must fan out over the same items ([1])",
        ),
        ("steps:\n  a: {command: [x]}\n  b: {command: [x], needs: {a: later}}\n", "steps.b.needs.a", "'item'"),
        ("steps:\n  a: {command: [x], when: params.nope}\n", "steps.a.when", "declares no parameter 'nope'"),
        ("steps:\n  a: {command: [x], when: 'os.system(1)'}\n", "steps.a.when", "is not a condition"),
    ],
)
def test_a_broken_pipeline_is_named_by_field(tmp_path: Path, change: str, field: str, message: str) -> None:
    head = PIPELINE.split("steps:")[0]
    spec, problems = load(tmp_path, head + change)

    assert spec is None
    found = fields(problems)
    assert field in found, found
    assert message in found[field]


@pytest.mark.parametrize(
    ("schedule", "field", "message"),
    [
        ("{name: d, cron: '0 25 * * *'}", "schedules.0.cron", "not a five-field cron expression"),
        ("{name: d, cron: '@daily'}", "schedules.0.cron", "not a five-field cron expression"),
        ("{name: d, cron: '0 1 * * *', timezone: Mars/Olympus}", "schedules.0.timezone", "not a known time zone"),
        ("{name: d, cron: '0 1 * * *', params: {a: 1}, each: [{a: 2}]}", "schedules.0", "not both"),
        ("{name: d, cron: '0 1 * * *', overlap: later}", "schedules.0.overlap", "'skip' or 'queue'"),
    ],
)
def test_a_broken_schedule_is_named_by_field(tmp_path: Path, schedule: str, field: str, message: str) -> None:
    spec, problems = load(tmp_path, f"name: demo\ncommand: [x]\nschedules:\n  - {schedule}\n")

    assert spec is None
    found = fields(problems)
    assert field in found, found
    assert message in found[field]


def test_a_trigger_reads_an_unquoted_on_key(tmp_path: Path) -> None:
    text = "name: demo\ncommand: [x]\ntriggers:\n  - name: fresh\n    on: dataset.version_added\n    dataset: cases\n"
    spec, problems = load(tmp_path, text)

    assert problems == []
    assert spec is not None and spec.triggers[0].dataset == "cases"


@pytest.mark.parametrize(
    ("trigger", "message"),
    [
        ("{name: t, on: dataset.version_added}", "needs `dataset:`"),
        ("{name: t, on: run.succeeded}", "needs `model:`"),
        ("{name: t, on: run.failed, model: m}", "dataset.version_added"),
    ],
)
def test_a_broken_trigger_says_what_it_needs(tmp_path: Path, trigger: str, message: str) -> None:
    spec, problems = load(tmp_path, f"name: demo\ncommand: [x]\ntriggers:\n  - {trigger}\n")

    assert spec is None
    assert any(message in problem.message for problem in problems), problems


def test_needs_say_how_a_step_is_needed_and_a_chained_step_takes_its_items(tmp_path: Path) -> None:
    head = PIPELINE.split("steps:")[0]
    spec, problems = load(
        tmp_path,
        head
        + "steps:\n"
        + "  tests: {command: [x], foreach: params.regions}\n"
        + "  stats: {command: [x], needs: {tests: item}}\n"
        + "  update: {command: [x], when: not params.regions, foreach: []}\n"
        + "  summary: {command: [x], needs: {stats: all, update: optional}}\n",
    )

    assert problems == [] and spec is not None
    assert spec.fan_out("stats") == "params.regions"
    assert spec.step_order() == ["tests", "stats", "update", "summary"]
    dumped = spec.model_dump(mode="json")["steps"]
    assert dumped["summary"]["needs"] == {"stats": "all", "update": "optional"}
    assert dumped["tests"]["needs"] == []  # a list, as before, while every need is whole
    assert spec.model_validate(spec.model_dump()) == spec
