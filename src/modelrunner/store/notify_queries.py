"""The queries of notifications: subscriptions, the outbox of deliveries and their attempts.
Callers pass the session (the transaction). A delivery's status changes only by
``set_deliveries_if``, a compare-and-set (so two servers on one database never send the same
delivery at once) that notify/delivery_transition.py calls after checking its table."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from modelrunner.engine.states import RunStatus
from modelrunner.store.tables import (
    DeliveryAttemptRow,
    DeliveryRow,
    OutputRow,
    RunRow,
    SubscriptionRow,
)

# --- subscriptions ------------------------------------------------------------------------------


def add_subscription(session: Session, row: SubscriptionRow) -> SubscriptionRow:
    session.add(row)
    session.flush()
    return row


def subscription(session: Session, subscription_id: int) -> SubscriptionRow | None:
    """The subscription, removed or not."""
    return session.get(SubscriptionRow, subscription_id)


def subscriptions_by_id(session: Session, ids: Collection[int]) -> dict[int, SubscriptionRow]:
    """The subscriptions of ``ids``, removed or not."""
    if not ids:
        return {}
    statement = select(SubscriptionRow).where(SubscriptionRow.id.in_(list(ids)))
    return {row.id: row for row in session.scalars(statement)}


def subscriptions(session: Session, user_id: int | None) -> list[SubscriptionRow]:
    """The active subscriptions of one user (of everyone with None), oldest first."""
    statement = select(SubscriptionRow).where(SubscriptionRow.removed_at.is_(None)).order_by(SubscriptionRow.id)
    if user_id is not None:
        statement = statement.where(SubscriptionRow.user_id == user_id)
    return list(session.scalars(statement))


def same_subscription(session: Session, row: SubscriptionRow) -> SubscriptionRow | None:
    """An active subscription of ``row``'s user that asks for exactly what ``row`` does."""
    statement = select(SubscriptionRow).where(
        SubscriptionRow.removed_at.is_(None),
        SubscriptionRow.user_id == row.user_id,
        SubscriptionRow.model == row.model,
        SubscriptionRow.run_id.is_(None) if row.run_id is None else SubscriptionRow.run_id == row.run_id,
        SubscriptionRow.step.is_(None) if row.step is None else SubscriptionRow.step == row.step,
        SubscriptionRow.output.is_(None) if row.output is None else SubscriptionRow.output == row.output,
        SubscriptionRow.notify_on == row.notify_on,
        SubscriptionRow.channel == row.channel,
        SubscriptionRow.url.is_(None) if row.url is None else SubscriptionRow.url == row.url,
    )
    # Parameter values are JSON, which the two stores compare differently: compared here.
    wanted = row.params or {}
    return next((found for found in session.scalars(statement) if (found.params or {}) == wanted), None)


def subscriptions_for(session: Session, models: Collection[str], run_ids: Collection[int]) -> list[SubscriptionRow]:
    """The active subscriptions to any of ``models`` (whole-model ones, and those narrowed to a
    step, an output or parameter values) or ``run_ids``."""
    if not models and not run_ids:
        return []
    statement = (
        select(SubscriptionRow)
        .where(
            SubscriptionRow.removed_at.is_(None),
            or_(
                and_(SubscriptionRow.run_id.is_(None), SubscriptionRow.model.in_(list(models))),
                SubscriptionRow.run_id.in_(list(run_ids)),
            ),
        )
        .order_by(SubscriptionRow.id)
    )
    return list(session.scalars(statement))


def any_active_subscription(session: Session) -> bool:
    statement = select(SubscriptionRow.id).where(SubscriptionRow.removed_at.is_(None)).limit(1)
    return session.scalars(statement).first() is not None


def remove_subscription_if_active(session: Session, subscription_id: int, at: dt.datetime) -> bool:
    """Mark the subscription removed and wipe its secret; False if it was removed already."""
    statement = (
        update(SubscriptionRow)
        .where(SubscriptionRow.id == subscription_id, SubscriptionRow.removed_at.is_(None))
        .values(removed_at=at, secret=None)
    )
    return bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]


def stored_secrets(session: Session, after_id: int, limit: int) -> list[tuple[int, str]]:
    """(id, encrypted secret) of the subscriptions that keep a secret, by id after ``after_id``."""
    statement = (
        select(SubscriptionRow.id, SubscriptionRow.secret)
        .where(SubscriptionRow.secret.is_not(None), SubscriptionRow.id > after_id)
        .order_by(SubscriptionRow.id)
        .limit(limit)
    )
    return [(row_id, str(secret)) for row_id, secret in session.execute(statement)]


def replace_secret_if(session: Session, subscription_id: int, expected: str, secret: str) -> bool:
    """Store ``secret`` in place of ``expected``; False if the stored one changed meanwhile
    (the subscription was removed, or another rotation got there first)."""
    statement = (
        update(SubscriptionRow)
        .where(SubscriptionRow.id == subscription_id, SubscriptionRow.secret == expected)
        .values(secret=secret)
    )
    return bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]


# --- deliveries ---------------------------------------------------------------------------------


def add_deliveries(session: Session, rows: list[DeliveryRow]) -> None:
    """Insert the deliveries; AlreadyExists if one's key exists already."""
    session.add_all(rows)
    session.flush()


def delivery(session: Session, delivery_id: int) -> DeliveryRow | None:
    return session.get(DeliveryRow, delivery_id)


def deliveries(
    session: Session,
    *,
    user_id: int | None,
    subscription_id: int | None,
    statuses: Collection[str],
    before_id: int | None,
    limit: int,
) -> list[DeliveryRow]:
    """Deliveries, newest first, narrowed by whichever filters are given."""
    statement = select(DeliveryRow).order_by(DeliveryRow.id.desc()).limit(limit)
    if user_id is not None:
        statement = statement.where(DeliveryRow.user_id == user_id)
    if subscription_id is not None:
        statement = statement.where(DeliveryRow.subscription_id == subscription_id)
    if statuses:
        statement = statement.where(DeliveryRow.status.in_(list(statuses)))
    if before_id is not None:
        statement = statement.where(DeliveryRow.id < before_id)
    return list(session.scalars(statement))


def due_deliveries(session: Session, statuses: Collection[str], now: dt.datetime, limit: int) -> list[DeliveryRow]:
    """Deliveries in ``statuses`` whose ``next_attempt_at`` has come, the longest-waiting first."""
    statement = (
        select(DeliveryRow)
        .where(DeliveryRow.status.in_(list(statuses)), DeliveryRow.next_attempt_at <= now)
        .order_by(DeliveryRow.next_attempt_at, DeliveryRow.id)
        .limit(limit)
    )
    return list(session.scalars(statement))


def deliveries_in(session: Session, status: str, limit: int) -> list[DeliveryRow]:
    """The oldest deliveries in ``status`` (e.g. those being sent, to look for dead senders)."""
    statement = select(DeliveryRow).where(DeliveryRow.status == status).order_by(DeliveryRow.id).limit(limit)
    return list(session.scalars(statement))


def held_deliveries(session: Session, status: str) -> list[DeliveryRow]:
    """Every delivery held for the next digest, oldest first."""
    statement = select(DeliveryRow).where(DeliveryRow.status == status).order_by(DeliveryRow.id)
    return list(session.scalars(statement))


def set_deliveries_if(
    session: Session,
    statuses: Collection[str],
    values: Mapping[str, Any],
    *,
    ids: Collection[int] | None,
    expected: Mapping[str, Any] | None = None,
) -> int:
    """Compare-and-set: change the deliveries (those of ``ids``; with None, every one) whose status
    is one of ``statuses`` and whose other columns hold ``expected``; how many changed. Only
    notify/delivery_transition.py calls it, once its table has allowed the move."""
    conditions = [getattr(DeliveryRow, name) == value for name, value in (expected or {}).items()]
    if ids is not None:
        conditions.append(DeliveryRow.id.in_(list(ids)))
    statement = update(DeliveryRow).where(DeliveryRow.status.in_(list(statuses)), *conditions).values(**values)
    return int(session.execute(statement).rowcount)  # type: ignore[attr-defined]


def count_unsent(session: Session, statuses: Collection[str]) -> dict[str, int]:
    """Channel -> how many deliveries are in one of ``statuses``. Reads only those (the status
    index), however many were sent before."""
    statement = (
        select(DeliveryRow.channel, func.count())
        .where(DeliveryRow.status.in_(list(statuses)))
        .group_by(DeliveryRow.channel)
    )
    return {channel: int(count) for channel, count in session.execute(statement)}


def digest_items(session: Session, digest_id: int) -> list[DeliveryRow]:
    statement = select(DeliveryRow).where(DeliveryRow.digest_id == digest_id).order_by(DeliveryRow.id)
    return list(session.scalars(statement))


# --- delivery attempts --------------------------------------------------------------------------


def add_attempt(session: Session, row: DeliveryAttemptRow) -> None:
    session.add(row)
    session.flush()


def attempts_of(session: Session, delivery_id: int) -> list[DeliveryAttemptRow]:
    statement = (
        select(DeliveryAttemptRow).where(DeliveryAttemptRow.delivery_id == delivery_id).order_by(DeliveryAttemptRow.id)
    )
    return list(session.scalars(statement))


# --- what notifications say of runs -------------------------------------------------------------


def runs_by_id(session: Session, run_ids: Collection[int]) -> dict[int, RunRow]:
    if not run_ids:
        return {}
    return {row.id: row for row in session.scalars(select(RunRow).where(RunRow.id.in_(list(run_ids))))}


def earlier_computed_successes(session: Session, run: RunRow, before_id: int, limit: int) -> list[RunRow]:
    """Computed (not cache-hit) successes of ``run``'s model, the same step and fan-out item,
    with an id below ``before_id``, newest first (the (model, status, id) index)."""
    statement = (
        select(RunRow)
        .where(
            RunRow.model_name == run.model_name,
            RunRow.status == RunStatus.SUCCEEDED.value,
            RunRow.id < before_id,
            RunRow.cache_hit.is_(False),
            RunRow.kind == run.kind,
            RunRow.step.is_(None) if run.step is None else RunRow.step == run.step,
            RunRow.item_key.is_(None) if run.item_key is None else RunRow.item_key == run.item_key,
        )
        .order_by(RunRow.id.desc())
        .limit(limit)
    )
    return list(session.scalars(statement))


def output_digests(session: Session, run_id: int) -> dict[str, str]:
    """The run's outputs as {path: sha256}."""
    statement = select(OutputRow.path, OutputRow.sha256).where(OutputRow.run_id == run_id)
    return {path: sha for path, sha in session.execute(statement)}
