"""Routing as a pure function of the specs and the submitter, and ``modelrunner check`` naming the
backends that are not declared."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modelrunner.auth.principal import ANONYMOUS, Principal
from modelrunner.engine.routing import Route, choosable_backends, choose_backend
from modelrunner.errors import Forbidden, InvalidInput, SpecError, Unauthenticated
from modelrunner.spec.model_spec import ModelSpec
from modelrunner.spec.workspace import Workspace, WorkspaceSpec

ROUTED: dict[str, Any] = {
    "backends": {"wide": {"type": "local", "slots": 2}, "narrow": {"type": "local", "slots": 1}, "spare": {}},
    "default_backend": "wide",
    "routing": [
        {"group": "forecasters", "backend": "narrow", "models": ["forecast-*"]},
        {"group": "forecasters", "backend": "spare"},
        {"group": "analysts", "backend": "spare"},
    ],
    "access": {"groups": {"owners": [{"models": "forecast-*", "allow": "admin"}]}},
}


def spec(**fields: Any) -> WorkspaceSpec:
    return WorkspaceSpec.model_validate(fields)


def model(name: str = "forecast-cases", backend: str | None = None) -> ModelSpec:
    return ModelSpec.model_validate({"name": name, "command": ["true"], "backend": backend})


def user(*groups: str, admin: bool = False) -> Principal:
    return Principal(7, "ada", frozenset(groups), admin)


def test_without_backends_every_run_goes_to_local() -> None:
    assert choose_backend(spec(), model(), user("forecasters")) == Route("local", "workspace")
    assert choose_backend(spec(), model(), None) == Route("local", "workspace")


def test_the_workspace_default_then_its_first_declared_backend() -> None:
    assert choose_backend(spec(**ROUTED), model(), None) == Route("wide", "workspace")
    first = {**ROUTED, "default_backend": None}
    assert choose_backend(spec(**first), model(), None) == Route("wide", "workspace")


def test_the_models_default_comes_before_the_workspace_default() -> None:
    assert choose_backend(spec(**ROUTED), model(backend="spare"), user()) == Route("spare", "model")


def test_the_first_rule_of_a_group_of_the_submitter_matching_the_model_wins() -> None:
    routed = spec(**ROUTED)

    assert choose_backend(routed, model(backend="wide"), user("forecasters")) == Route("narrow", "routing:forecasters")
    # The first rule's glob does not match: the next rule of the group applies.
    assert choose_backend(routed, model("cases"), user("forecasters")) == Route("spare", "routing:forecasters")
    assert choose_backend(routed, model(), user("analysts", "forecasters")) == Route("narrow", "routing:forecasters")
    assert choose_backend(routed, model(), user("analysts")) == Route("spare", "routing:analysts")
    assert choose_backend(routed, model(backend="narrow"), user("others")) == Route("narrow", "model")


def test_runs_without_a_submitter_are_not_routed_by_group() -> None:
    assert choose_backend(spec(**ROUTED), model(backend="narrow"), None) == Route("narrow", "model")


def test_a_requested_backend_is_taken_from_an_admin_of_the_model_or_a_group_routed_there() -> None:
    routed = spec(**ROUTED)

    assert choose_backend(routed, model(), user("owners"), "spare") == Route("spare", "request")
    assert choose_backend(routed, model("cases"), user(admin=True), "narrow") == Route("narrow", "request")
    # Not only the rule that applies: any rule of the submitter's groups for the model counts.
    assert choose_backend(routed, model(), user("forecasters"), "spare") == Route("spare", "request")
    assert choose_backend(routed, model(), None, "narrow") == Route("narrow", "request")
    assert choosable_backends(routed, model(), user("forecasters")) == ["narrow", "spare"]
    assert choosable_backends(routed, model(), user("owners")) == ["narrow", "spare", "wide"]


def test_a_requested_backend_is_refused_to_others_saying_why() -> None:
    routed = spec(**ROUTED)

    with pytest.raises(Forbidden) as refused:
        choose_backend(routed, model(), user("forecasters"), "wide")
    assert refused.value.message == (
        "choosing backend 'wide' for model 'forecast-cases' needs 'admin' on the model, or a routing rule in "
        "modelrunner.yaml that sends it there for one of ada's groups; ada may choose: narrow, spare"
    )
    with pytest.raises(Forbidden, match="ada may choose none"):
        choose_backend(routed, model("cases"), user("owners"), "wide")  # owners administer forecast-* only
    with pytest.raises(Unauthenticated, match="choosing backend 'wide' needs a signed-in user"):
        choose_backend(routed, model(), ANONYMOUS, "wide")


def test_an_unknown_requested_backend_names_the_field_and_the_backends() -> None:
    with pytest.raises(InvalidInput) as unknown:
        choose_backend(spec(**ROUTED), model(), user(admin=True), "gpu")
    assert unknown.value.message == "unknown backend 'gpu' (backends: narrow, spare, wide)"
    assert unknown.value.details == {"field": "backend"}


def test_a_rule_naming_an_undeclared_backend_is_a_spec_error_where_it_applies() -> None:
    broken = spec(**{**ROUTED, "routing": [{"group": "analysts", "backend": "gpu"}]})

    with pytest.raises(SpecError, match=r"modelrunner\.yaml: routing\.0\.backend: unknown backend 'gpu'"):
        choose_backend(broken, model(), user("analysts"))
    assert choose_backend(broken, model(), user("others")) == Route("wide", "workspace")
    with pytest.raises(SpecError, match=r"model\.yaml of model 'forecast-cases': backend: unknown backend 'gpu'"):
        choose_backend(spec(**ROUTED), model(backend="gpu"), None)


def test_check_names_each_unknown_backend_by_field(tmp_path: Path) -> None:
    workspace_spec = {
        **ROUTED,
        "default_backend": "fast",
        "routing": [*ROUTED["routing"], {"group": "x", "backend": "gpu"}],
    }
    (tmp_path / "modelrunner.yaml").write_text(yaml.safe_dump(workspace_spec))
    (tmp_path / "forecast").mkdir()
    (tmp_path / "forecast" / "model.yaml").write_text("name: forecast\ncommand: [python, -V]\nbackend: slurm\n")

    problems = Workspace(tmp_path).problems()

    assert [(p.file, p.field, p.message) for p in problems] == [
        ("modelrunner.yaml", "default_backend", "unknown backend 'fast' (backends: narrow, spare, wide)"),
        ("modelrunner.yaml", "routing.3.backend", "unknown backend 'gpu' (backends: narrow, spare, wide)"),
        ("forecast/model.yaml", "backend", "unknown backend 'slurm' (backends: narrow, spare, wide)"),
    ]
