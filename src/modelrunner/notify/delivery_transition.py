"""The table of a delivery's allowed status changes, and the functions its changes go through.

A delivery is born ``pending`` (or ``held`` for a digest); see ``notify/states.py`` for what each
status means.
"""

from __future__ import annotations

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
    if the table does not allow the move."""
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
        lambda sources: notify_queries.set_deliveries_if(session, delivery_ids, sources, changes, expected=expected),
        only_from={source},
    )
