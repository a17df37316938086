"""Loading ``model.yaml``: every problem is named by file and field, and valid specs load."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelrunner.errors import SpecError
from modelrunner.spec.model_spec import ModelSpec, Resources, SpecProblem, load_model_spec

BROKEN = Path(__file__).parents[1] / "workspace" / "broken"


def write_model(root: Path, text: str, folder: str = "demo") -> Path:
    model_dir = root / folder
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "model.yaml").write_text(text, encoding="utf-8")
    return model_dir


def load(root: Path, text: str, folder: str = "demo") -> tuple[ModelSpec | None, list[SpecProblem]]:
    spec, problems = load_model_spec(write_model(root, text, folder), f"{folder}/model.yaml")
    return spec, problems


def fields(problems: list[SpecProblem]) -> dict[str, str]:
    return {problem.field: problem.message for problem in problems}


def test_broken_spec_reports_every_problem_by_file_and_field() -> None:
    spec, problems = load_model_spec(BROKEN, "broken/model.yaml")

    assert spec is None
    assert {p.file for p in problems} == {"broken/model.yaml"}
    found = fields(problems)
    assert set(found) == {"command", "resources.timeout", "unknown_field"}
    assert "list" in found["command"]
    assert "greater than 0" in found["resources.timeout"]
    assert found["unknown_field"] == "is not a known field"
    assert all(str(p).startswith("broken/model.yaml: ") for p in problems)


def test_minimal_spec_loads_with_defaults(tmp_path: Path) -> None:
    spec, problems = load(tmp_path, "name: demo\ncommand: [python, run.py]\n")

    assert problems == []
    assert spec is not None
    assert spec.command == ["python", "run.py"]
    assert spec.params == {"type": "object"}
    assert spec.resources.timeout is None
    assert (spec.retries.failed, spec.retries.lost) == (0, 2)
    assert spec.outputs == []


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    spec, problems = load(tmp_path, "name: demo\ncommand: [python, run.py\nparams: {}\n")

    assert spec is None
    [problem] = problems
    assert problem.file == "demo/model.yaml"
    assert problem.field.startswith("line ")
    assert "not valid YAML" in problem.message


def test_spec_that_is_not_a_mapping(tmp_path: Path) -> None:
    spec, problems = load(tmp_path, "- name: demo\n")

    assert spec is None
    assert [p.message for p in problems] == ["must be a mapping of fields (name, command, params, ...)"]


def test_missing_model_yaml_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "demo").mkdir()

    spec, problems = load_model_spec(tmp_path / "demo", "demo/model.yaml")

    assert spec is None
    assert len(problems) == 1
    assert "cannot be read" in problems[0].message


def test_missing_command(tmp_path: Path) -> None:
    spec, problems = load(tmp_path, "name: demo\ntitle: No command\n")

    assert spec is None
    assert fields(problems) == {"command": "is required (or `notebook`, `image`, or `steps` for a pipeline)"}


@pytest.mark.parametrize("command", ["[]", '[""]', '["  ", "x"]'])
def test_empty_command(tmp_path: Path, command: str) -> None:
    spec, problems = load(tmp_path, f"name: demo\ncommand: {command}\n")

    assert spec is None
    assert list(fields(problems)) == ["command"]


def test_invalid_json_schema_in_params(tmp_path: Path) -> None:
    spec, problems = load(
        tmp_path,
        "name: demo\ncommand: [run]\nparams:\n  type: object\n  properties:\n    n: {type: integr}\n",
    )

    assert spec is None
    found = fields(problems)
    assert list(found) == ["params"]
    assert "not a valid JSON Schema" in found["params"]
    assert "properties.n.type" in found["params"]


def test_params_schema_must_describe_an_object(tmp_path: Path) -> None:
    spec, problems = load(tmp_path, "name: demo\ncommand: [run]\nparams: {type: array}\n")

    assert spec is None
    assert "type: object" in fields(problems)["params"]


def test_name_must_match_the_folder(tmp_path: Path) -> None:
    spec, problems = load(tmp_path, "name: other\ncommand: [run]\n", folder="demo")

    assert spec is None
    [problem] = problems
    assert (problem.file, problem.field) == ("demo/model.yaml", "name")
    assert "'other'" in problem.message
    assert "'demo'" in problem.message


@pytest.mark.parametrize("name", ["Demo", "my model", "-demo", "x" * 64])
def test_invalid_names(tmp_path: Path, name: str) -> None:
    spec, problems = load(tmp_path, f"name: '{name}'\ncommand: [run]\n", folder="folder")

    assert spec is None
    assert "lowercase" in fields(problems)["name"]


def test_unknown_fields_are_named_at_every_level(tmp_path: Path) -> None:
    spec, problems = load(
        tmp_path,
        "name: demo\ncommand: [run]\ncomand: [typo]\nresources: {cpus: 2}\nretries: {falied: 1}\n",
    )

    assert spec is None
    assert fields(problems) == {
        "comand": "is not a known field",
        "resources.cpus": "is not a known field",
        "retries.falied": "is not a known field",
    }


@pytest.mark.parametrize("timeout", ["soon", "10 minutes", "-5m", "1w", "m"])
def test_bad_timeout_string(tmp_path: Path, timeout: str) -> None:
    spec, problems = load(tmp_path, f"name: demo\ncommand: [run]\nresources: {{timeout: '{timeout}'}}\n")

    assert spec is None
    assert "duration" in fields(problems)["resources.timeout"]


@pytest.mark.parametrize("timeout", ["0", "0s", "-1"])
def test_timeout_must_be_positive(tmp_path: Path, timeout: str) -> None:
    spec, problems = load(tmp_path, f"name: demo\ncommand: [run]\nresources: {{timeout: {timeout}}}\n")

    assert spec is None
    assert list(fields(problems)) == ["resources.timeout"]


@pytest.mark.parametrize(
    ("timeout", "seconds"),
    [("30m", 1800), ("90s", 90), ("2h", 7200), ("1d", 86400), ("1.5h", 5400), ("45", 45), (" 10 m ", 600)],
)
def test_valid_durations(tmp_path: Path, timeout: str, seconds: float) -> None:
    spec, problems = load(tmp_path, f"name: demo\ncommand: [run]\nresources: {{timeout: '{timeout}'}}\n")

    assert problems == []
    assert spec is not None
    assert spec.resources.timeout == seconds


def test_timeout_as_a_number(tmp_path: Path) -> None:
    spec, _ = load(tmp_path, "name: demo\ncommand: [run]\nresources: {timeout: 12.5}\n")

    assert spec is not None
    assert spec.resources.timeout == 12.5


def test_retries_shorthand_means_failed_attempts(tmp_path: Path) -> None:
    spec, _ = load(tmp_path, "name: demo\ncommand: [run]\nretries: 3\n")

    assert spec is not None
    assert (spec.retries.failed, spec.retries.lost) == (3, 2)


def test_negative_retries_are_rejected(tmp_path: Path) -> None:
    spec, problems = load(tmp_path, "name: demo\ncommand: [run]\nretries: {failed: -1}\n")

    assert spec is None
    assert list(fields(problems)) == ["retries.failed"]


@pytest.mark.parametrize("path", ["/etc/passwd", "../escape.csv", "a/../../b", "  "])
def test_outputs_must_stay_inside_the_outputs_folder(tmp_path: Path, path: str) -> None:
    spec, problems = load(tmp_path, f"name: demo\ncommand: [run]\noutputs:\n  - path: '{path}'\n")

    assert spec is None
    assert "relative path" in fields(problems)["outputs.0.path"]


def test_cpu_asks_for_whole_slots(tmp_path: Path) -> None:
    spec, _ = load(tmp_path, "name: demo\ncommand: [run]\nresources: {cpu: 1.5}\n")

    assert spec is not None
    assert spec.resources.slots == 2


def test_a_resource_class_fills_in_what_the_model_leaves_out() -> None:
    classes = {"large": Resources(cpu=8, memory="64Gi", timeout=7200)}
    spec = ModelSpec.model_validate(
        {"name": "m", "command": ["run"], "resources": {"class": "large", "timeout": "10m"}}
    )
    resolved = spec.in_classes(classes).resources
    assert (resolved.resource_class, resolved.cpu, resolved.memory, resolved.timeout) == ("large", 8, "64Gi", 600)
    assert spec.in_classes(classes).part(None).resources.slots == 8
    # What is stored and read back (the catalog's copy) resolves the same way.
    stored = ModelSpec.model_validate(spec.model_dump(mode="json"))
    assert stored.in_classes(classes).resources == resolved


def test_a_step_names_a_class_and_an_unknown_class_is_named() -> None:
    spec = ModelSpec.model_validate(
        {"name": "p", "steps": {"a": {"command": ["a"], "resources": {"class": "gpu"}}, "b": {"command": ["b"]}}}
    )
    assert spec.resource_classes() == [("steps.a.resources.class", "gpu")]
    assert spec.in_classes({"gpu": Resources(gpus=1)}).steps["a"].resources.gpus == 1
    with pytest.raises(SpecError, match=r"unknown resource class 'gpu' \(resource_classes: none declared\)"):
        spec.in_classes({})
