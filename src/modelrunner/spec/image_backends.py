"""Which backends run image models (``image:`` in model.yaml), and the check that says when a
model's image would go to one that cannot."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase

from modelrunner.spec.backend_spec import BackendSpec, ContainerBackendSpec, RoutingRule
from modelrunner.spec.model_spec import ModelSpec, SpecProblem

# The container backend runs an image with this machine's podman or docker. The others start a
# process (local, worker, dask, slurm) or `modelrunner exec` in their own image (kubernetes, aws-*,
# azure-batch): an image model's image would need modelrunner inside it, which its authors never
# installed.
IMAGE_BACKEND_TYPES = frozenset({"container"})
_RUNS_EXEC_IN_ITS_IMAGE = frozenset({"kubernetes", "aws-ecs", "aws-batch", "azure-batch"})


def image_fields(spec: ModelSpec) -> list[str]:
    """Where ``spec`` names an image: ``image``, or ``steps.<name>.image`` of a pipeline."""
    if not spec.steps:
        return ["image"] if spec.image is not None else []
    return [f"steps.{name}.image" for name, step in spec.steps.items() if step.image is not None]


def image_problems(
    backends: Mapping[str, BackendSpec],
    default: str,
    routing: Sequence[RoutingRule],
    models: Iterable[tuple[ModelSpec, str]],
) -> list[SpecProblem]:
    """A problem for each backend an image model is sent to (by its ``backend:``, the workspace's
    ``default`` backend or a rule of ``routing`` matching it) whose type cannot run images.
    ``models`` pairs each model's spec with its model.yaml as shown to people."""
    problems = []
    for spec, shown in models:
        fields = image_fields(spec)
        if not fields:
            continue
        targets = {spec.backend or default}
        targets |= {rule.backend for rule in routing if any(fnmatchcase(spec.name, glob) for glob in rule.models)}
        for name in sorted(targets):
            backend = backends.get(name)
            if backend is not None and backend.type not in IMAGE_BACKEND_TYPES:
                why = (
                    "runs `modelrunner exec` in its own image, not in the model's"
                    if backend.type in _RUNS_EXEC_IN_ITS_IMAGE
                    else "starts processes, not containers"
                )
                problems.append(
                    SpecProblem(
                        shown,
                        fields[0],
                        f"model '{spec.name}' is an image model, which backend '{name}' (type: {backend.type}) "
                        f"cannot run: it {why}; declare a backend of `type: container` and route the model to it",
                    )
                )
    return problems


def engine_problems(backends: Mapping[str, BackendSpec], shown: str) -> list[SpecProblem]:
    """A problem for each container backend whose engine (podman or docker, the one it names) is not
    installed on this machine; ``shown`` is modelrunner.yaml as shown to people."""
    problems = []
    for name, backend in backends.items():
        if isinstance(backend, ContainerBackendSpec):
            wanted = [backend.engine] if backend.engine is not None else ["podman", "docker"]
            if not any(shutil.which(program) for program in wanted):
                problems.append(
                    SpecProblem(
                        shown,
                        f"backends.{name}.engine",
                        f"{' or '.join(wanted)} is not installed on this machine: image models cannot run here",
                    )
                )
    return problems
