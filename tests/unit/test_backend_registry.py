"""Every backend ``type`` that modelrunner.yaml accepts can be built, and only those."""

from __future__ import annotations

import typing

from modelrunner.backends.registry import BUILDERS
from modelrunner.spec.backend_spec import BackendSpec


def test_every_declarable_type_has_a_builder() -> None:
    union = typing.get_args(BackendSpec)[0]
    declarable = {typing.get_args(spec.model_fields["type"].annotation)[0] for spec in typing.get_args(union)}
    assert declarable == set(BUILDERS)
