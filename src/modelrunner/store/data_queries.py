"""The queries of datasets: their syncs and versions. Callers pass the session (the transaction)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from modelrunner.data.sync_status import ACTIVE_SYNC_STATES, SyncStatus
from modelrunner.store.tables import DatasetSyncRow, DatasetVersionRow

_ACTIVE_SYNCS = [s.value for s in ACTIVE_SYNC_STATES]

# --- syncs --------------------------------------------------------------------------------------


def add_sync(session: Session, row: DatasetSyncRow) -> DatasetSyncRow:
    """Insert the sync; AlreadyExists if one of the dataset is already queued or running."""
    session.add(row)
    session.flush()
    return row


def get_sync(session: Session, sync_id: int) -> DatasetSyncRow | None:
    return session.get(DatasetSyncRow, sync_id)


def active_sync(session: Session, dataset: str) -> DatasetSyncRow | None:
    statement = select(DatasetSyncRow).where(
        DatasetSyncRow.dataset == dataset, DatasetSyncRow.status.in_(_ACTIVE_SYNCS)
    )
    return session.scalars(statement).first()


def _syncs_in(session: Session, status: SyncStatus) -> list[DatasetSyncRow]:
    statement = select(DatasetSyncRow).where(DatasetSyncRow.status == status.value).order_by(DatasetSyncRow.id)
    return list(session.scalars(statement))


def queued_syncs(session: Session) -> list[DatasetSyncRow]:
    return _syncs_in(session, SyncStatus.QUEUED)


def running_syncs(session: Session) -> list[DatasetSyncRow]:
    return _syncs_in(session, SyncStatus.RUNNING)


def set_sync_if(session: Session, sync_id: int, allowed_from: Collection[str], values: dict[str, Any]) -> bool:
    """Compare-and-set: change the sync only if its status is one of ``allowed_from``."""
    statement = (
        update(DatasetSyncRow)
        .where(DatasetSyncRow.id == sync_id, DatasetSyncRow.status.in_(list(allowed_from)))
        .values(**values)
    )
    return bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]


def syncs_of(session: Session, dataset: str, limit: int) -> list[DatasetSyncRow]:
    statement = (
        select(DatasetSyncRow).where(DatasetSyncRow.dataset == dataset).order_by(DatasetSyncRow.id.desc()).limit(limit)
    )
    return list(session.scalars(statement))


def last_syncs(session: Session) -> dict[str, DatasetSyncRow]:
    """The newest sync of each dataset that has one."""
    newest = select(func.max(DatasetSyncRow.id)).group_by(DatasetSyncRow.dataset)
    rows = session.scalars(select(DatasetSyncRow).where(DatasetSyncRow.id.in_(newest)))
    return {row.dataset: row for row in rows}


def last_requested(session: Session, dataset: str) -> dt.datetime | None:
    """When the dataset's newest sync was asked for (its poll interval counts from there)."""
    statement = (
        select(DatasetSyncRow.created_at)
        .where(DatasetSyncRow.dataset == dataset)
        .order_by(DatasetSyncRow.id.desc())  # the (dataset, id) index: one row read, however long the history
        .limit(1)
    )
    return session.scalars(statement).first()


# --- versions -----------------------------------------------------------------------------------


def add_versions(session: Session, rows: Iterable[DatasetVersionRow]) -> None:
    session.add_all(list(rows))
    session.flush()


def known_versions(session: Session, dataset: str) -> set[str]:
    return set(session.scalars(select(DatasetVersionRow.version).where(DatasetVersionRow.dataset == dataset)))


def _newest_first(dataset: str) -> Any:
    return (
        select(DatasetVersionRow)
        .where(DatasetVersionRow.dataset == dataset)
        .order_by(DatasetVersionRow.time.desc(), DatasetVersionRow.id.desc())
    )


def get_version(session: Session, dataset: str, version: str) -> DatasetVersionRow | None:
    statement = select(DatasetVersionRow).where(
        DatasetVersionRow.dataset == dataset, DatasetVersionRow.version == version
    )
    return session.scalars(statement).first()


def newest_version(session: Session, dataset: str) -> DatasetVersionRow | None:
    return session.scalars(_newest_first(dataset).limit(1)).first()


def versions_of(session: Session, dataset: str, *, offset: int, limit: int) -> list[DatasetVersionRow]:
    """Newest first (by the data's own time)."""
    return list(session.scalars(_newest_first(dataset).offset(offset).limit(limit)))


def versions_since(session: Session, dataset: str, since: dt.datetime, limit: int) -> list[DatasetVersionRow]:
    """Versions whose data time is ``since`` or later, newest first."""
    statement = _newest_first(dataset).where(DatasetVersionRow.time >= since).limit(limit)
    return list(session.scalars(statement))


def versions_with_prefix(session: Session, dataset: str, prefix: str, limit: int) -> list[DatasetVersionRow]:
    """Versions whose id starts with ``prefix`` (``limit`` 2 tells whether it is unique)."""
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    statement = (
        select(DatasetVersionRow)
        .where(DatasetVersionRow.dataset == dataset, DatasetVersionRow.version.like(f"{escaped}%", escape="\\"))
        .limit(limit)
    )
    return list(session.scalars(statement))


def count_versions(session: Session) -> dict[str, int]:
    rows = session.execute(select(DatasetVersionRow.dataset, func.count()).group_by(DatasetVersionRow.dataset)).all()
    return {dataset: count for dataset, count in rows}


def delete_versions(session: Session, dataset: str) -> int:
    """Remove every recorded version of the dataset; how many there were."""
    result = session.execute(delete(DatasetVersionRow).where(DatasetVersionRow.dataset == dataset))
    return int(result.rowcount)  # type: ignore[attr-defined]
