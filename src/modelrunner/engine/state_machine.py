"""Tables of allowed status changes, and the compare-and-set every change of a status goes through.

A table names, for each status of one kind of row (a delivery, a sync, a firing), the statuses it
may go to. A change is checked against the table before it reaches the store, and the store's
compare-and-set then applies it only while the row is still in a status the change may come
from: a row another process moved meanwhile stays where that process put it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from enum import StrEnum
from typing import Generic, TypeVar

from modelrunner.errors import InvalidTransition

Status = TypeVar("Status", bound=StrEnum)
Outcome = TypeVar("Outcome")


class TransitionTable(Generic[Status]):
    """Where a ``thing`` (named in errors) may go from each of its statuses; every status has a row,
    final ones an empty one."""

    def __init__(self, thing: str, moves: Mapping[Status, Collection[Status]]) -> None:
        self.thing = thing
        self.moves: dict[Status, frozenset[Status]] = {source: frozenset(targets) for source, targets in moves.items()}

    def sources_of(self, target: Status) -> frozenset[Status]:
        """The statuses from which a move to ``target`` is allowed."""
        return frozenset(source for source, targets in self.moves.items() if target in targets)

    def check(self, sources: Collection[Status], target: Status) -> None:
        """InvalidTransition naming the first of ``sources`` that may not go to ``target``."""
        for source in sources:
            if target not in self.moves[source]:
                raise InvalidTransition(
                    f"a {self.thing} that is {source.value} cannot become {target.value}",
                    status=source.value,
                    to=target.value,
                )


def change_status(
    table: TransitionTable[Status],
    target: Status,
    set_if: Callable[[list[str]], Outcome],
    *,
    only_from: Collection[Status] | None = None,
) -> Outcome:
    """Move rows to ``target`` by the store's compare-and-set ``set_if``, which is given the
    values of the statuses the rows may be in and returns whether (or how many) moved.

    The sources are ``only_from`` (what the caller read), or every status the table allows a move
    to ``target`` from. InvalidTransition, with nothing written, when the table refuses a move
    from one of ``only_from`` or none leads to ``target``."""
    sources = table.sources_of(target) if only_from is None else frozenset(only_from)
    if not sources:
        raise InvalidTransition(f"no {table.thing} can become {target.value}", to=target.value)
    table.check(sources, target)
    return set_if(sorted(source.value for source in sources))
