"""The one exception hierarchy of modelrunner.

Every error carries a message a user can act on. The HTTP layer maps these classes to status
codes in one place (``api/errors.py``); the CLI prints the message without a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class ModelrunnerError(Exception):
    """Root of every error modelrunner raises on purpose."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(ModelrunnerError):
    """An unknown model, run or output."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request: ``field`` is its dotted path (``params.region.code``),
    ``message`` says what is wrong without repeating the field."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class InvalidInput(ModelrunnerError):
    """Parameters or a request body that break a schema; ``details['field']`` names the (first)
    field, ``problems`` lists every problem found, so a caller can fix them all at once."""

    def __init__(self, message: str, *, problems: Sequence[Problem] = (), **details: Any) -> None:
        super().__init__(message, **details)
        if problems:
            self.problems = list(problems)
        else:
            field = str(details.get("field", ""))
            # Messages raised one at a time often start with their field already.
            self.problems = [Problem(field, message.removeprefix(f"{field}: ") if field else message)]

    @classmethod
    def of(cls, problems: Sequence[Problem], **details: Any) -> InvalidInput:
        """Every problem in one error: its message holds one problem a line."""
        return cls("\n".join(str(p) for p in problems), problems=problems, field=problems[0].field, **details)


class Unauthenticated(ModelrunnerError):
    """No valid credentials: an unknown, expired or revoked token, or none where one is needed."""


class Forbidden(ModelrunnerError):
    """The caller is known but lacks a permission; the message says which."""


class SpecError(ModelrunnerError):
    """A broken ``model.yaml`` or ``modelrunner.yaml``; ``details['problems']`` lists them."""


class Conflict(ModelrunnerError):
    """A request that cannot be served in the current state (e.g. cache-only with no result)."""


class InvalidTransition(Conflict):
    """A status change that the transition table of its kind of row (a run, an attempt, a delivery,
    a sync, a firing) does not allow from the status the row is in."""


class StoreError(ModelrunnerError):
    """The database failed in a way no caller can fix by changing its request."""


class AlreadyExists(Conflict):
    """A row whose unique key is taken: another process (or server) stored the same thing first.
    The store raises it for every unique-constraint violation, on SQLite and PostgreSQL alike."""


class ChangedMeanwhile(Conflict):
    """A compare-and-set found its row no longer as it was read: another process (or server)
    changed it first. The caller's transaction is rolled back; reading again shows where it is."""
