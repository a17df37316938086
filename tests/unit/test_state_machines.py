"""The tables of allowed status changes of deliveries, syncs and firings, and the check every change
passes before it reaches the store."""

from __future__ import annotations

from collections import deque
from enum import StrEnum
from typing import Any

import pytest

from modelrunner.data.sync_status import SYNC_TRANSITIONS, SyncStatus
from modelrunner.engine.firings import FIRING_TRANSITIONS, FiringStatus
from modelrunner.engine.state_machine import TransitionTable, change_status
from modelrunner.errors import InvalidTransition
from modelrunner.notify.delivery_transition import DELIVERY_TRANSITIONS
from modelrunner.notify.states import DeliveryStatus

TABLES: list[tuple[TransitionTable[Any], type[StrEnum], set[StrEnum]]] = [
    (
        DELIVERY_TRANSITIONS,
        DeliveryStatus,
        {DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.CANCELLED, DeliveryStatus.DIGESTED},
    ),
    (SYNC_TRANSITIONS, SyncStatus, {SyncStatus.SUCCEEDED, SyncStatus.FAILED}),
    (FIRING_TRANSITIONS, FiringStatus, {FiringStatus.SUBMITTED, FiringStatus.SKIPPED, FiringStatus.FAILED}),
]


def reachable_from(table: TransitionTable[StrEnum], start: StrEnum) -> set[StrEnum]:
    seen, todo = {start}, deque([start])
    while todo:
        for following in table.moves[todo.popleft()]:
            if following not in seen:
                seen.add(following)
                todo.append(following)
    return seen


@pytest.mark.parametrize(("table", "statuses", "final"), TABLES, ids=lambda v: getattr(v, "thing", ""))
def test_every_status_has_a_row_final_ones_no_exit_and_others_reach_an_end(
    table: TransitionTable[StrEnum], statuses: type[StrEnum], final: set[StrEnum]
) -> None:
    assert set(table.moves) == set(statuses)
    assert {status for status, targets in table.moves.items() if not targets} == final
    for status in set(statuses) - final:
        assert reachable_from(table, status) & final, status


def test_an_illegal_move_is_refused_before_the_store_is_asked() -> None:
    asked: list[list[str]] = []
    with pytest.raises(InvalidTransition, match="a delivery that is delivered cannot become pending"):
        change_status(DELIVERY_TRANSITIONS, DeliveryStatus.PENDING, asked.append, only_from={DeliveryStatus.DELIVERED})
    with pytest.raises(InvalidTransition, match="no sync can become queued"):
        change_status(SYNC_TRANSITIONS, SyncStatus.QUEUED, asked.append)
    with pytest.raises(InvalidTransition, match="a firing that is submitted cannot become skipped"):
        change_status(FIRING_TRANSITIONS, FiringStatus.SKIPPED, asked.append, only_from={FiringStatus.SUBMITTED})
    assert asked == []


def test_a_move_asks_the_store_to_compare_and_set_from_the_allowed_sources() -> None:
    asked: list[list[str]] = []

    def set_if(sources: list[str]) -> bool:
        asked.append(sources)
        return True

    assert change_status(SYNC_TRANSITIONS, SyncStatus.FAILED, set_if) is True
    assert change_status(FIRING_TRANSITIONS, FiringStatus.SUBMITTED, set_if, only_from={FiringStatus.WAITING})
    assert asked == [["queued", "running"], ["waiting"]]
