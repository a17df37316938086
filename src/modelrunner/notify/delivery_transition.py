"""The table of a delivery's allowed status changes, and the functions its changes go through.

A delivery is born ``pending`` (or ``held`` for a digest); see ``notify/states.py`` for what each
status means. Nothing else writes a delivery's status: the store's compare-and-set is called from
here only, after the table has allowed the move.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy.orm import Session

from modelrunner.engine.state_machine import TransitionTable, change_status
from modelrunner.notify.states import DeliveryStatus
from modelrunner.store import notify_queries

DELIVERY_TRANSITIONS = TransitionTable(
    "delivery",
    {
        DeliveryStatus.PENDING: {DeliveryStatus.SENDING, DeliveryStatus.CANCELLED},
        # sending -> sending: a claim taken over from a sender that died or outlived its lease.
        DeliveryStatus.SENDING: {
            DeliveryStatus.SENDING,
            DeliveryStatus.DELIVERED,
            DeliveryStatus.PENDING,
            DeliveryStatus.FAILED,
            DeliveryStatus.CANCELLED,
        },
        DeliveryStatus.HELD: {DeliveryStatus.DIGESTED, DeliveryStatus.CANCELLED},
        DeliveryStatus.DELIVERED: set(),
        DeliveryStatus.FAILED: set(),
        DeliveryStatus.CANCELLED: set(),
        DeliveryStatus.DIGESTED: set(),
    },
)

# What removing a subscription cancels. A delivery being sent is left to its sender, which finds
# the subscription removed and cancels it (or records what it sent).
UNSENT = frozenset({DeliveryStatus.PENDING, DeliveryStatus.HELD})


def move_delivery(
    session: Session,
    delivery_id: int,
    source: DeliveryStatus,
    to: DeliveryStatus,
    *,
    expected: Mapping[str, Any] | None = None,
    **values: Any,
) -> bool:
    """Move one delivery from ``source`` to ``to`` (with ``values``) while its other columns hold
    ``expected`` (its attempt count, its claimer); False if it changed meanwhile, InvalidTransition
    (nothing written) if the table does not allow the move."""
    return bool(move_deliveries(session, [delivery_id], source, to, expected=expected, **values))


def move_deliveries(
    session: Session,
    delivery_ids: Collection[int],
    source: DeliveryStatus,
    to: DeliveryStatus,
    *,
    expected: Mapping[str, Any] | None = None,
    **values: Any,
) -> int:
    """Move those of the deliveries still in ``source`` to ``to``; how many moved."""
    changes = {"status": to.value, **values}
    return change_status(
        DELIVERY_TRANSITIONS,
        to,
        lambda sources: notify_queries.set_deliveries_if(
            session, sources, changes, ids=delivery_ids, expected=expected
        ),
        only_from={source},
    )


def cancel_unsent(session: Session, subscription_id: int, at: dt.datetime) -> int:
    """Cancel the subscription's deliveries not sent yet (pending, or held for a digest) in one
    statement; how many. Those sent, failed or being sent stay as they are."""
    changes = {"status": DeliveryStatus.CANCELLED.value, "next_attempt_at": None, "updated_at": at}
    return change_status(
        DELIVERY_TRANSITIONS,
        DeliveryStatus.CANCELLED,
        lambda sources: notify_queries.set_deliveries_if(
            session, sources, changes, ids=None, expected={"subscription_id": subscription_id}
        ),
        only_from=UNSENT,
    )
