"""What the workspace's datasets hold, read for the HTTP API: each dataset with its newest version
and last sync, a dataset's versions and syncs, one version by a prefix of its id.

Read-only: every function takes the caller's session and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from modelrunner.errors import InvalidInput, NotFound
from modelrunner.spec.dataset_spec import DatasetSpec
from modelrunner.spec.workspace import Workspace
from modelrunner.store import data_queries
from modelrunner.store.tables import DatasetSyncRow, DatasetVersionRow

MIN_PREFIX = 4  # as git: shorter prefixes match too much to name a version


@dataclass(frozen=True)
class DatasetSummary:
    """A declared dataset and what is recorded of it: how many versions, the newest (by the
    data's own time), and its newest sync. ``newest`` and ``last_sync`` are None before the
    first sync."""

    name: str
    spec: DatasetSpec
    version_count: int
    newest: DatasetVersionRow | None
    last_sync: DatasetSyncRow | None


def dataset_summaries(session: Session, workspace: Workspace) -> list[DatasetSummary]:
    """Every dataset ``modelrunner.yaml`` declares, sorted by name (SpecError if it is broken)."""
    declared = workspace.datasets()
    counts = data_queries.count_versions(session)
    syncs = data_queries.last_syncs(session)
    return [
        DatasetSummary(
            name=name,
            spec=spec,
            version_count=counts.get(name, 0),
            # One query per dataset: a workspace declares a handful, and this keeps the ordering
            # (data time, then id) in the one query that defines "newest".
            newest=data_queries.newest_version(session, name) if counts.get(name) else None,
            last_sync=syncs.get(name),
        )
        for name, spec in sorted(declared.items())
    ]


def dataset_summary(session: Session, workspace: Workspace, name: str) -> DatasetSummary:
    """One declared dataset; NotFound if the workspace does not declare ``name``."""
    spec = workspace.dataset(name)
    recent = data_queries.syncs_of(session, name, limit=1)
    return DatasetSummary(
        name=name,
        spec=spec,
        version_count=data_queries.count_versions(session).get(name, 0),
        newest=data_queries.newest_version(session, name),
        last_sync=recent[0] if recent else None,
    )


def versions(session: Session, name: str, *, offset: int, limit: int) -> list[DatasetVersionRow]:
    """A page of the dataset's recorded versions, newest data first."""
    return data_queries.versions_of(session, name, offset=offset, limit=limit)


def version(session: Session, name: str, prefix: str) -> DatasetVersionRow:
    """The version whose id is ``prefix`` or starts with it (at least ``MIN_PREFIX`` characters).

    InvalidInput (field ``version``) for a prefix too short or matching several versions;
    NotFound when none matches.
    """
    wanted = prefix.strip().lower()
    if len(wanted) < MIN_PREFIX:
        raise InvalidInput(
            f"a version (or its prefix) has at least {MIN_PREFIX} characters", field="version", location="path"
        )
    rows = data_queries.versions_with_prefix(session, name, wanted, limit=2)
    exact = [row for row in rows if row.version == wanted]
    if exact:
        return exact[0]
    if not rows:
        raise NotFound(
            f"dataset '{name}' has no version {wanted!r} (see `modelrunner data versions {name}`)",
            dataset=name,
            version=wanted,
        )
    if len(rows) > 1:
        raise InvalidInput(
            f"{wanted!r} matches several versions of '{name}'; give more characters", field="version", location="path"
        )
    return rows[0]


def syncs(session: Session, name: str, *, limit: int) -> list[DatasetSyncRow]:
    """The dataset's newest syncs, newest first."""
    return data_queries.syncs_of(session, name, limit)


def sync(session: Session, name: str, sync_id: int) -> DatasetSyncRow:
    """Sync ``sync_id`` of dataset ``name``; NotFound if there is none (or it syncs another dataset)."""
    row = data_queries.get_sync(session, sync_id)
    if row is None or row.dataset != name:
        raise NotFound(f"dataset '{name}' has no sync {sync_id}", dataset=name, sync=sync_id)
    return row
