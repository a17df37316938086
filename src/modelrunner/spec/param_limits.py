"""Size limits on the parameters a caller submits: how many, how long a string, how long a list.

A model's JSON Schema may leave these open (``additionalProperties``, a string without
``maxLength``); the server still must not store, validate and list whatever a caller sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelrunner.errors import InvalidInput, Problem


@dataclass(frozen=True)
class ParamLimits:
    max_params: int
    max_string_length: int
    max_list_length: int


def check_param_sizes(params: Any, limits: ParamLimits) -> None:
    """Nothing when ``params`` is within ``limits``; else InvalidInput listing each value over one
    and the setting that sets it. Walks without recursion: a deeply nested value cannot exhaust
    the stack."""
    if not isinstance(params, dict):
        return  # validation says what is wrong with it
    if len(params) > limits.max_params:
        raise InvalidInput(
            f"params: {len(params)} parameters; this server takes at most {limits.max_params} "
            "(max_params, MODELRUNNER_MAX_PARAMS)",
            field="params",
            limit="max_params",
        )
    problems: list[Problem] = []
    pending: list[tuple[str, Any]] = [(f"params.{key}", value) for key, value in params.items()]
    pending += [("params", key) for key in params]
    while pending:
        where, value = pending.pop()
        if isinstance(value, str) and len(value) > limits.max_string_length:
            problems.append(
                Problem(
                    where,
                    f"a string of {len(value)} characters; this server takes at most {limits.max_string_length} "
                    "(max_param_string_length, MODELRUNNER_MAX_PARAM_STRING_LENGTH)",
                )
            )
        if isinstance(value, list):
            if len(value) > limits.max_list_length:
                problems.append(
                    Problem(
                        where,
                        f"a list of {len(value)} items; this server takes at most {limits.max_list_length} "
                        "(max_param_list_length, MODELRUNNER_MAX_PARAM_LIST_LENGTH)",
                    )
                )
                continue  # its items are not looked at: the list is refused whole
            pending += [(f"{where}.{index}", item) for index, item in enumerate(value)]
        elif isinstance(value, dict):
            pending += [(f"{where}.{key}", item) for key, item in value.items()]
            pending += [(where, key) for key in value]
    if problems:
        raise InvalidInput.of(sorted(problems, key=lambda p: p.field.split(".")))
