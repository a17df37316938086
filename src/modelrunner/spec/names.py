"""Names of models, datasets and inputs: they appear in URLs, folder names and environment values."""

from __future__ import annotations

import re
from collections.abc import Iterable

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

# Variables of the platform itself: a model gets the contract's, never the server's settings.
RESERVED_VARIABLE_PREFIX = "MODELRUNNER_"


def check_name(value: str) -> str:
    """``value`` if it is a valid name; ValueError saying what a name may hold otherwise."""
    if not _NAME.match(value):
        raise ValueError("use lowercase letters, digits, '-' and '_' (at most 63), starting with a letter or digit")
    return value


def check_names(names: Iterable[str], what: str) -> None:
    """ValueError naming the first invalid name, e.g. "input 'Cases': use lowercase ..."."""
    for name in names:
        try:
            check_name(name)
        except ValueError as exc:
            raise ValueError(f"{what} {name!r}: {exc}") from exc
