"""Helpers for Python models running under modelrunner (the model contract).

A model does not need this module: it may read the ``MODELRUNNER_*`` variables and print
``::progress::`` lines itself. These helpers only save the boilerplate.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def _folder(variable: str) -> Path:
    value = os.environ.get(variable)
    if not value:
        raise RuntimeError(f"{variable} is not set: is this running under modelrunner?")
    return Path(value)


def params() -> dict[str, Any]:
    """The run's validated parameters, defaults filled in."""
    with open(_folder("MODELRUNNER_PARAMS"), encoding="utf-8") as handle:
        loaded: dict[str, Any] = json.load(handle)
    return loaded


def inputs() -> Path:
    """The folder holding one subfolder per declared input."""
    return _folder("MODELRUNNER_INPUTS")


def outputs() -> Path:
    """The folder whose files become the run's outputs."""
    return _folder("MODELRUNNER_OUTPUTS")


def checkpoint() -> Path:
    """A folder kept across the attempts of one run."""
    return _folder("MODELRUNNER_CHECKPOINT")


def progress(fraction: float, message: str = "") -> None:
    """Report progress (0.0 to 1.0) with an optional message; flushed at once."""
    fraction = min(max(float(fraction), 0.0), 1.0)
    print(f"::progress:: {fraction:.4f} {message}".rstrip(), flush=True)
