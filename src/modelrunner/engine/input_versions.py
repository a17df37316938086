"""Which data version each input of a run is computed on: the newest, a pinned one (a unique
prefix of its id is enough), or, for a cache look-up with ``max_age``, every recent one."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from modelrunner.data import catalog
from modelrunner.data.version_diff import folders
from modelrunner.errors import Conflict, InvalidInput, NotFound
from modelrunner.spec.input_folders import folder_of
from modelrunner.spec.model_spec import ModelSpec
from modelrunner.store import data_queries
from modelrunner.store.tables import DatasetVersionRow

_RECENT_PER_INPUT = 50  # how many versions back a cache look-up goes per input
_MAX_COMBINATIONS = 100


@dataclass(frozen=True)
class InputVersion:
    dataset: str
    version: str
    time: dt.datetime

    def as_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "version": self.version}


Inputs = dict[str, InputVersion]


def versions_of(inputs: Inputs) -> dict[str, str]:
    """Input name -> version id: what the cache key holds."""
    return {name: chosen.version for name, chosen in inputs.items()}


def check_pins(model: ModelSpec, pins: Mapping[str, str]) -> None:
    """InvalidInput for a pin of an input the model does not declare."""
    for name in pins:
        if name not in model.inputs:
            declared = ", ".join(sorted(model.inputs)) or "none"
            raise InvalidInput(
                f"model '{model.name}' has no input '{name}' (its inputs: {declared})", field=f"inputs.{name}"
            )


def resolve(session: Session, model: ModelSpec, pins: Mapping[str, str]) -> Inputs:
    """Each input at its pinned version, or at its dataset's newest. InvalidInput for a pin that
    names no version or several; Conflict for a dataset with no version yet."""
    check_pins(model, pins)
    resolved = {}
    for name, dataset in model.inputs.items():
        pin = pins.get(name)
        row = _pinned(session, name, dataset, pin) if pin is not None else _newest(session, dataset)
        resolved[name] = InputVersion(dataset, row.version, row.time)
    return resolved


def recent(session: Session, model: ModelSpec, pins: Mapping[str, str], since: dt.datetime) -> list[Inputs]:
    """Every choice of versions whose unpinned inputs' data time is ``since`` or later, the newest
    data first; empty when some unpinned input has no version that recent."""
    fixed = resolve(session, model, {n: v for n, v in pins.items() if n in model.inputs})
    options: list[list[InputVersion]] = []
    for name, dataset in model.inputs.items():
        if name in pins:
            options.append([fixed[name]])
            continue
        rows = data_queries.versions_since(session, dataset, since, _RECENT_PER_INPUT)
        options.append([InputVersion(dataset, row.version, row.time) for row in rows])
    names = list(model.inputs)
    combinations = itertools.islice(itertools.product(*options), _MAX_COMBINATIONS)
    ordered = sorted(combinations, key=lambda choice: sorted((c.time for c in choice), reverse=True), reverse=True)
    return [dict(zip(names, choice, strict=True)) for choice in ordered]


def _newest(session: Session, dataset: str) -> DatasetVersionRow:
    row = data_queries.newest_version(session, dataset)
    if row is None:
        raise Conflict(
            f"dataset '{dataset}' has no versions yet; sync it first: modelrunner data sync {dataset}",
            dataset=dataset,
        )
    return row


def _pinned(session: Session, name: str, dataset: str, pin: str) -> DatasetVersionRow:
    try:
        return catalog.version(session, dataset, pin)
    except (InvalidInput, NotFound) as exc:
        # A pin is part of the request: whatever is wrong with it, the request is invalid there.
        raise InvalidInput(f"input '{name}': {exc.message}", field=f"inputs.{name}") from exc


def check_folders(session: Session, model: ModelSpec, params: dict[str, Any], chosen: Inputs) -> None:
    """InvalidInput naming the parameter when a folder input's folder is not a top-level folder
    of the data version ``chosen`` for it (spec/input_folders.py)."""
    for name, path in model.input_folders.items():
        folder = folder_of(model.input_folders, name, params)
        if folder is None or name not in chosen:
            continue
        row = data_queries.get_version(session, chosen[name].dataset, chosen[name].version)
        there = folders(row) if row is not None else []
        if folder not in there:
            raise InvalidInput(
                f"{path}: dataset '{chosen[name].dataset}' (version {chosen[name].version[:12]}) has no folder "
                f"{folder!r}; its folders: {', '.join(there) or 'none'}",
                field=path,
            )
