"""Step versions: what stands for the model version in a pipeline step's cache key.

A step with ``files:`` is keyed by its own spec (the form it runs: command, notebook, image by
digest, environment file) and the digests of the files it uses: its ``files:`` patterns, the
model's ``shared_files:``, and the files its spec names (its notebook, its environment file, the
arguments of its command that are files of the model). Editing any other file, or another
step's spec, leaves its key as it was. Resources, retries, needs, ``when:`` and descriptions
change no result and are not part of it (fan-out items, parameters, inputs, upstream outputs and
the profile are in the key besides).

A step without ``files:`` uses the whole folder: its version is the model version, exactly as
before step versions existed, so the keys recorded for such models stay valid.

The snapshot an attempt runs is always the whole folder's version; only the key narrows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from modelrunner.spec.model_spec import StepSpec
from modelrunner.spec.model_version import file_digest, model_files
from modelrunner.spec.params import canonical_json
from modelrunner.spec.step_files import used_files
from modelrunner.spec.workspace import Model

_REMEMBERED = 64  # model versions whose step versions a StepVersions keeps


@dataclass(frozen=True)
class StepVersion:
    """A step's version and what it is made of: ``spec`` (a digest of the fields of its spec that
    decide results) and ``files`` (path -> digest) for a step with ``files:``; None for both when
    it uses the whole folder (its version is then the model version)."""

    version: str
    spec: str | None = None
    files: dict[str, str] | None = None

    def as_json(self) -> dict[str, Any]:
        if self.files is None:
            return {"version": self.version}
        return {"version": self.version, "spec": self.spec, "files": self.files}


def spec_fields(step: StepSpec) -> dict[str, Any]:
    """The fields of a step's spec that decide its results (see the module's docstring)."""
    return {"command": step.command, "notebook": step.notebook, "image": step.image, "environment": step.environment}


def step_versions(model: Model) -> dict[str, StepVersion]:
    """Every step's version for the model as it is now (its spec with images pinned, as submit
    has it). SpecError names a ``files:`` or ``shared_files:`` pattern that matches no file."""
    spec = model.spec
    if not any(step.files is not None for step in spec.steps.values()):
        return {name: StepVersion(model.version) for name in spec.steps}
    every = [path.as_posix() for path in model_files(model.folder)]
    digests: dict[str, str] = {}
    versions: dict[str, StepVersion] = {}
    for name in spec.steps:
        used = used_files(spec, name, every)
        if used is None:
            versions[name] = StepVersion(model.version)
            continue
        for path in used - digests.keys():
            digests[path] = file_digest(model.folder / path)
        files = {path: digests[path] for path in sorted(used)}
        fields = hashlib.sha256(canonical_json(spec_fields(spec.part(name))).encode()).hexdigest()[:16]
        document = canonical_json({"spec": fields, "files": files})
        versions[name] = StepVersion(hashlib.sha256(document.encode()).hexdigest()[:16], fields, files)
    return versions


class StepVersions:
    """Step versions remembered per model version, so an unchanged model is not read again."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str, str], dict[str, StepVersion]] = {}

    def of(self, model: Model) -> dict[str, StepVersion]:
        identity = (str(model.folder), model.version, canonical_json(model.spec.model_dump(mode="json")))
        found = self._known.get(identity)
        if found is None:
            found = step_versions(model)
            if len(self._known) >= _REMEMBERED:
                self._known.pop(next(iter(self._known)))
            self._known[identity] = found
        return found
