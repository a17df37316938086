"""Inputs that are one folder of a dataset's version, chosen by a parameter:
``inputs: {scenario: {dataset: paris, path: params.scenario}}`` gives the model only the folder
``<scenario>/`` of the dataset (as ``MODELRUNNER_INPUTS/scenario/``), so "run scenario x" is one
request. The spec keeps ``inputs`` as input name -> dataset, and the chosen folders apart."""

from __future__ import annotations

from typing import Any

_PARAM = "params."


def split_folder_inputs(data: Any) -> Any:
    """A model's raw spec with each ``{dataset, path}`` input written as its dataset's name in
    ``inputs`` and its path in ``input_folders``; anything else unchanged (validation names it)."""
    if not isinstance(data, dict) or not isinstance(data.get("inputs"), dict):
        return data
    if not any(isinstance(value, dict) for value in data["inputs"].values()):
        return data
    inputs: dict[str, Any] = {}
    folders: dict[str, Any] = dict(data.get("input_folders") or {})
    for name, value in data["inputs"].items():
        if not isinstance(value, dict):
            inputs[name] = value
            continue
        unknown = sorted(set(value) - {"dataset", "path"})
        if unknown or not isinstance(value.get("dataset"), str):
            raise ValueError(
                f"inputs.{name}: a dataset's name, or {{dataset: NAME, path: params.PARAM}}"
                + (f" (not {', '.join(unknown)})" if unknown else "")
            )
        inputs[name] = value["dataset"]
        if "path" in value:
            folders[name] = value["path"]
    return {**data, "inputs": inputs, "input_folders": folders}


def check_input_folders(folders: dict[str, str], inputs: dict[str, str], params_schema: dict[str, Any]) -> None:
    """ValueError unless each folder input is an input and names a string parameter."""
    declared = params_schema.get("properties", {})
    for name, path in folders.items():
        if name not in inputs:
            raise ValueError(f"input_folders.{name}: this model has no input '{name}'")
        param = path.removeprefix(_PARAM)
        if not path.startswith(_PARAM) or param not in declared:
            raise ValueError(f"inputs.{name}.path: must be params.<a parameter of this model>, not {path!r}")
        if declared[param].get("type", "string") != "string":
            raise ValueError(f"inputs.{name}.path: parameter '{param}' must be a string (a folder's name)")


def folder_of(folders: dict[str, str], name: str, params: dict[str, Any]) -> str | None:
    """The folder of input ``name`` a run with ``params`` reads; None for a whole-dataset input."""
    path = folders.get(name)
    if path is None:
        return None
    value = params.get(path.removeprefix(_PARAM))
    return value if isinstance(value, str) else None
