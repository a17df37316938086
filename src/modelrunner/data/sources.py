"""From a dataset's spec to the source that reads it."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from fsspec.core import split_protocol

from modelrunner.data.files_source import FilesSource
from modelrunner.data.git_source import GitSource
from modelrunner.data.http_source import HttpSource
from modelrunner.data.managed_source import ManagedSource
from modelrunner.data.source import Source
from modelrunner.spec.dataset_spec import FilesDataset, GitDataset, HttpDataset, ManagedDataset

# What git itself takes for a remote rather than a path: `scheme://...`, or scp-like `host:path`
# (a colon before any slash).
_GIT_REMOTE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://|^[^/]+:")


def open_source(
    name: str,
    spec: GitDataset | FilesDataset | HttpDataset | ManagedDataset,
    *,
    workspace_root: Path,
    state_dir: Path,
) -> Source:
    """The source of dataset ``name``. Opening touches nothing: errors surface on first use.

    Relative local paths (a git ``repo``, a files ``url``) are taken from ``workspace_root``. A git
    source keeps its mirror in ``state_dir / "data" / "git"``, one per repository location.
    """
    if isinstance(spec, GitDataset):
        repo = spec.repo if _GIT_REMOTE.match(spec.repo) else str(_local(spec.repo, workspace_root))
        mirror = state_dir / "data" / "git" / f"{hashlib.sha256(repo.encode()).hexdigest()[:24]}.git"
        return GitSource(name, repo, mirror=mirror, branch=spec.branch, paths=spec.paths)
    if isinstance(spec, FilesDataset):
        protocol, _ = split_protocol(spec.url)
        url = spec.url if protocol else str(_local(spec.url, workspace_root))
        return FilesSource(name, url, spec.options)
    if isinstance(spec, ManagedDataset):
        return ManagedSource(name)
    return HttpSource(name, spec.url)


def _local(path: str, workspace_root: Path) -> Path:
    return (workspace_root / Path(path).expanduser()).resolve()
