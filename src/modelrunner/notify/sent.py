"""The outcome of one attempt to send, as a delivery attempt records it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

_MAX_ERROR = 2000


@dataclass(frozen=True)
class Sent:
    """``ok``: the other side took it. ``http_status``: a webhook's answer. ``error``: what went
    wrong, in words a user can act on, with no secret in it."""

    ok: bool
    http_status: int | None
    error: str | None


def redacted(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every occurrence of a secret replaced by ``***`` (an SMTP server or a library
    may echo what it was given), cut to a length a table can show."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 3] + "..."
