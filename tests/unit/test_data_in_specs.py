"""What a model.yaml and a modelrunner.yaml may say about data brought in: file parameters, folder
inputs, a managed dataset's write rules, and file names as uploaders give them."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from modelrunner.auth.principal import Principal
from modelrunner.auth.write_rules import require_writable
from modelrunner.errors import Forbidden
from modelrunner.spec.dataset_spec import DatasetSpec, ManagedDataset
from modelrunner.spec.file_params import FileReference, as_model_sees, safe_filename
from modelrunner.spec.model_spec import ModelSpec
from modelrunner.spec.params import check_params

pytestmark = pytest.mark.store_free

FILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"network": {"type": "string", "format": "file"}, "scenario": {"type": "string"}},
}
DIGEST = "ab" * 32


def model(**fields: Any) -> ModelSpec:
    return ModelSpec.model_validate({"name": "m", "command": ["python", "m.py"], **fields})


def test_a_folder_input_is_kept_apart_and_must_name_a_string_parameter() -> None:
    spec = model(params=FILE_SCHEMA, inputs={"scenario": {"dataset": "paris", "path": "params.scenario"}, "x": "y"})
    assert spec.inputs == {"scenario": "paris", "x": "y"}
    assert spec.input_folders == {"scenario": "params.scenario"}
    for inputs, said in [
        ({"s": {"dataset": "paris", "path": "params.nope"}}, "must be params.<a parameter"),
        ({"s": {"dataset": "paris", "path": "scenario"}}, "must be params.<a parameter"),
        ({"s": {"dataset": "paris", "folder": "x"}}, "not folder"),
        ({"s": {"path": "params.scenario"}}, "{dataset: NAME, path: params.PARAM}"),
    ]:
        with pytest.raises(ValidationError, match=said.replace("{", r"\{").replace(".", r"\.")):
            model(params=FILE_SCHEMA, inputs=inputs)
    with pytest.raises(ValidationError, match="must be a string"):
        model(
            params={"type": "object", "properties": {"n": {"type": "integer"}}},
            inputs={"s": {"dataset": "paris", "path": "params.n"}},
        )


def test_an_input_called_params_collides_with_file_parameters_only() -> None:
    with pytest.raises(ValidationError, match="'params' holds this model's file parameters"):
        model(params=FILE_SCHEMA, inputs={"params": "paris"})
    assert model(inputs={"params": "paris"}).inputs == {"params": "paris"}


def test_a_file_parameter_takes_a_reference_and_the_model_sees_a_path() -> None:
    reference = f"sha256:{DIGEST}/links.geojson"
    _, problems = check_params(FILE_SCHEMA, {"network": reference})
    assert problems == []
    for wrong in ["/etc/passwd", "links.geojson", f"sha256:{DIGEST}/../x", f"sha256:{DIGEST[:-1]}/x", "sha256:/x"]:
        _, problems = check_params(FILE_SCHEMA, {"network": wrong})
        assert [p.field for p in problems] == ["params.network"], wrong
    shown, files = as_model_sees(FILE_SCHEMA, {"network": reference, "scenario": "x"})
    assert shown == {"network": "params/network/links.geojson", "scenario": "x"}
    assert files == [("params/network", "links.geojson", f"uploads/{DIGEST}")]
    assert FileReference.parse(f"sha256:{DIGEST}/.hidden") is None  # only names safe_filename keeps


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Windows\\system.ini", "system.ini"),
        ("a\x00b\x1b[31m.txt", "ab_31m.txt"),
        ("...", "upload"),
        (".bashrc", "bashrc"),
        ("résumé (final).pdf", "résumé_final_.pdf"),
        ("x" * 300 + ".tar.gz", "x" * 117 + ".gz"),
    ],
)
def test_file_names_from_uploaders_become_one_plain_name(given: str, kept: str) -> None:
    assert safe_filename(given) == kept
    assert "/" not in kept and len(kept) <= 120


def test_write_rules_first_match_decides() -> None:
    spec = TypeAdapter(DatasetSpec).validate_python(
        {"source": "managed", "write": {"base/**": ["planners"], "**": ["analysts"]}}
    )
    assert isinstance(spec, ManagedDataset)
    planner = Principal(1, "pia", frozenset({"planners"}))
    analyst = Principal(2, "ali", frozenset({"analysts"}))
    require_writable("paris", spec, planner, ["base/links.geojson"])
    require_writable("paris", spec, analyst, ["x/links.geojson", "od.csv"])
    with pytest.raises(Forbidden, match=r"write rule 'base/\*\*'"):
        require_writable("paris", spec, analyst, ["x/ok.csv", "base/links.geojson"])
    with pytest.raises(Forbidden, match="write rule '\\*\\*'"):
        require_writable("paris", spec, planner, ["x/links.geojson"])
    require_writable("paris", spec, Principal(3, "root", is_admin=True), ["base/x"])
    with pytest.raises(ValidationError, match="relative"):
        TypeAdapter(DatasetSpec).validate_python({"source": "managed", "write": {"../**": ["a"]}})
