"""``modelrunner check`` on a model's ``notify:`` section: a summary or a changed output it names
that the model does not declare among its outputs is most likely a typo, and would make its
notifications silently plain. Models that declare no outputs are not checked (nothing to compare
with)."""

from __future__ import annotations

import fnmatch

from modelrunner.spec.model_spec import ModelSpec

_GLOB = set("*?[")


def notify_problems(spec: ModelSpec) -> list[tuple[str, str]]:
    """(field, message) of each path of ``notify:`` that names no declared output."""
    names, patterns = _declared(spec)
    if not names:
        return []
    problems = []
    wanted = [("notify.summary", spec.notify.summary)] if spec.notify.summary else []
    wanted += [("notify.changes", path) for path in spec.notify.changes or [] if not _GLOB & set(path)]
    for field, path in wanted:
        if path in names or any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns):
            continue
        problems.append((field, f"'{path}' is none of the model's declared outputs ({', '.join(sorted(names))})"))
    return problems


def _declared(spec: ModelSpec) -> tuple[set[str], list[str]]:
    """The names ``notify:`` may give declared outputs, and patterns of a fan-out's (per item)."""
    names = {output.path for output in spec.outputs}
    patterns: list[str] = []
    for step_name, step in spec.steps.items():
        for output in step.outputs:
            names |= {output.path, f"{step_name}/{output.path}"}
            if step.foreach is not None:
                patterns.append(f"{step_name}/*/{output.path}")
    return names, patterns
