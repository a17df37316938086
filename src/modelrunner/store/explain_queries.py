"""What ``runs explain`` reads: the earlier runs a run's cache key is compared with."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelrunner.store.tables import RunRow

EARLIER_COMPARED = 20  # the newest earlier runs a run is compared with


def earlier_computed(session: Session, run: RunRow) -> list[RunRow]:
    """The newest earlier runs (at most EARLIER_COMPARED, newest first) that computed the same
    model's same step and item as ``run``: cache hits are left out, they computed nothing."""
    statement = (
        select(RunRow)
        .where(
            RunRow.model_name == run.model_name,
            RunRow.kind == run.kind,
            RunRow.id < run.id,
            RunRow.cache_hit.is_(False),
        )
        .order_by(RunRow.id.desc())
        .limit(EARLIER_COMPARED)
    )
    statement = statement.where(RunRow.step.is_(None) if run.step is None else RunRow.step == run.step)
    statement = statement.where(RunRow.item_key.is_(None) if run.item_key is None else RunRow.item_key == run.item_key)
    return list(session.scalars(statement))


def runs_by_id(session: Session, ids: set[int]) -> dict[int, RunRow]:
    if not ids:
        return {}
    return {row.id: row for row in session.scalars(select(RunRow).where(RunRow.id.in_(sorted(ids))))}
