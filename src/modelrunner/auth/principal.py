"""Who is asking: a signed-in user with their groups, or nobody in particular."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """The identity behind a request; ``user_id`` None is an anonymous caller."""

    user_id: int | None
    name: str
    groups: frozenset[str] = frozenset()
    is_admin: bool = False

    @property
    def signed_in(self) -> bool:
        return self.user_id is not None


ANONYMOUS = Principal(None, "anonymous")
