"""What ``modelrunner check`` finds wrong with a model's notebooks (``notebook:``): a file that is
not there, a file that is not a Jupyter notebook, and a notebook that cannot run for want of the
``notebook`` extra."""

from __future__ import annotations

import json
import keyword
from pathlib import Path

from modelrunner.extras import missing_module
from modelrunner.spec.model_spec import ModelSpec, SpecProblem

# What running a notebook imports, in the order a missing one is named.
_NOTEBOOK_LIBRARIES = ("papermill", "nbconvert", "ipykernel")
_LONGEST_REASON = 200


def notebook_problems(spec: ModelSpec, folder: Path, shown_as: str) -> list[SpecProblem]:
    """A problem for each notebook of ``spec`` (its own, or its steps') that is missing from
    ``folder`` or is not a valid notebook, and, once, for the ``notebook`` extra when a notebook
    runs under modelrunner's interpreter without it (a model's own ``environment`` brings its own)."""
    parts = [(f"steps.{name}", step) for name, step in spec.steps.items()] or [("", spec.part(None))]
    problems = []
    if any(part.notebook is not None for _, part in parts):
        problems += _parameter_name_problems(spec, shown_as)
    extra_named = False
    for where, part in parts:
        if part.notebook is None:
            continue
        field = f"{where}.notebook" if where else "notebook"
        message = notebook_problem(folder / part.notebook, part.notebook)
        if message:
            problems.append(SpecProblem(shown_as, field, message))
        if part.environment is None and not extra_named:
            missing = next(filter(None, map(missing_module, _NOTEBOOK_LIBRARIES)), None)
            if missing is not None:
                problems.append(SpecProblem(shown_as, field, missing.message))
                extra_named = True
    return problems


def _parameter_name_problems(spec: ModelSpec, shown_as: str) -> list[SpecProblem]:
    # papermill sets each parameter as a variable (`name = value`) in the notebook.
    names = spec.params.get("properties", {})
    return [
        SpecProblem(shown_as, f"params.properties.{name}", "a notebook's parameters become variables: not a valid name")
        for name in names
        if not name.isidentifier() or keyword.iskeyword(name)
    ]


def notebook_problem(path: Path, shown_as: str) -> str | None:
    """Why the file at ``path`` cannot be run as a notebook, or None when it can."""
    if not path.is_file():
        return f"the notebook {shown_as!r} does not exist in the model folder"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return f"the notebook {shown_as!r} cannot be read: {getattr(exc, 'strerror', None) or exc}"
    outline = _outline_problem(text)
    if outline is None:
        try:
            import nbformat
        except ModuleNotFoundError:
            return None  # the outline is all there is to check without it (the extra is named apart)
        try:
            nbformat.validate(nbformat.reads(text, as_version=nbformat.NO_CONVERT))
        except Exception as exc:  # nbformat raises validation and version errors of its own
            outline = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"{shown_as!r} is not a valid Jupyter notebook: {outline[:_LONGEST_REASON]}" if outline else None


def _outline_problem(text: str) -> str | None:
    try:
        document = json.loads(text)
    except ValueError as exc:
        return f"not JSON ({exc})"
    if not isinstance(document, dict) or not isinstance(document.get("cells"), list):
        return "it has no list of cells"
    return None
