"""The partial outputs of attempts: what an attempt that did not succeed had written."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table, insert, select
from sqlalchemy.orm import Session

from modelrunner.store.tables import AttemptRow, PartialOutputRow

_partial: Table = PartialOutputRow.__table__  # type: ignore[assignment]


def add_partial_outputs(session: Session, attempt_id: int, outputs: Iterable[dict[str, Any]]) -> None:
    rows = [{"attempt_id": attempt_id, **output} for output in outputs]
    if rows:
        session.execute(insert(_partial), rows)


def partial_outputs_of_run(session: Session, run_id: int) -> dict[int, list[PartialOutputRow]]:
    """Attempt number -> its partial outputs by path, for the run's attempts that have any."""
    statement = (
        select(AttemptRow.number, PartialOutputRow)
        .join(AttemptRow, AttemptRow.id == PartialOutputRow.attempt_id)
        .where(AttemptRow.run_id == run_id)
        .order_by(AttemptRow.number, PartialOutputRow.path)
    )
    found: dict[int, list[PartialOutputRow]] = {}
    for number, row in session.execute(statement):
        found.setdefault(number, []).append(row)
    return found


def attempt_id_of(session: Session, run_id: int, number: int) -> int | None:
    """The id of the run's attempt ``number``, None when it has none."""
    found: int | None = session.scalar(
        select(AttemptRow.id).where(AttemptRow.run_id == run_id, AttemptRow.number == number)
    )
    return found


def partial_outputs_of(session: Session, attempt_id: int) -> list[PartialOutputRow]:
    statement = select(PartialOutputRow).where(PartialOutputRow.attempt_id == attempt_id)
    return list(session.scalars(statement.order_by(PartialOutputRow.path)))


def partial_output_at(session: Session, attempt_id: int, path: str) -> PartialOutputRow | None:
    return session.get(PartialOutputRow, (attempt_id, path))
