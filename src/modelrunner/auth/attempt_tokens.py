"""Callback tokens: each attempt gets one when it is claimed (``MODELRUNNER_CALLBACK_TOKEN``).
It reports that attempt's progress and log while the attempt lives, and opens nothing else."""

from __future__ import annotations

from sqlalchemy.orm import Session

from modelrunner.auth import secrets
from modelrunner.engine.states import ACTIVE_ATTEMPT_STATES
from modelrunner.errors import Forbidden, Unauthenticated
from modelrunner.store import queries
from modelrunner.store.tables import AttemptRow


def authenticate_attempt(session: Session, attempt_id: int, token: str | None) -> AttemptRow:
    """The attempt, once ``token`` is its live callback token. Unauthenticated
    for no token, an unknown one or an ended attempt; Forbidden for a user's token or another
    attempt's."""
    if not token:
        raise Unauthenticated("an attempt's report needs its callback token (MODELRUNNER_CALLBACK_TOKEN)")
    presented = secrets.parse(token)
    if presented is not None and presented.kind != secrets.ATTEMPT_TOKEN:
        raise Forbidden("an attempt's reports take its callback token, not a user's token")
    if presented is not None and presented.row_id != attempt_id:
        raise Forbidden(f"this callback token belongs to another attempt, not to attempt {attempt_id}")
    attempt = queries.get_attempt(session, attempt_id) if presented is not None else None
    if presented is None or attempt is None or not secrets.matches(presented.secret, attempt.callback_token_hash):
        raise Unauthenticated("unknown callback token")
    if attempt.status not in ACTIVE_ATTEMPT_STATES:
        raise Unauthenticated(f"attempt {attempt_id} has ended ({attempt.status}); its callback token is spent")
    return attempt
