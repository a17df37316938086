"""Who may see and change a dataset: it is reached through the models that read it. One rule for
the API and the pages."""

from __future__ import annotations

from modelrunner.auth.access import Access
from modelrunner.spec.access_spec import Level
from modelrunner.spec.workspace import Workspace


def dataset_readers(workspace: Workspace) -> dict[str, list[str]]:
    """The models reading each dataset, by dataset name."""
    found: dict[str, list[str]] = {}
    for model in workspace.models():
        for dataset in sorted(set(model.spec.inputs.values())):
            found.setdefault(dataset, []).append(model.name)
    return found


def sees_dataset(access: Access, readers: list[str]) -> bool:
    """Whether a dataset read by ``readers`` is in the caller's lists."""
    return access.principal.is_admin or bool(access.visible(readers))


def require_dataset(workspace: Workspace, access: Access, name: str, level: Level, doing: str) -> None:
    """NotFound for an unknown dataset (to callers with any grant), else the permission check."""
    if name not in workspace.datasets():
        access.require_listing(doing)
        workspace.dataset(name)  # raises NotFound naming it
    access.require_dataset(name, dataset_readers(workspace).get(name, []), level, doing)
