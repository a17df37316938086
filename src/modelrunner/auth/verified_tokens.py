"""Bearer tokens verified a moment ago, kept in memory so that a client's burst of requests costs
one store read instead of one each (the check was a sixth of the server's time per run).

A token's verdict is kept for at most ``ttl`` seconds and never past the token's expiry. A token
revoked, or a user disabled or moved between groups, is seen at once when this process made the
change (``accounts.tokens_generation``), and within ``ttl`` when another did (`modelrunner tokens
revoke` and `modelrunner users` write to the store directly). Refusals are not kept: a wrong
token is checked against the store every time."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from modelrunner.auth import accounts
from modelrunner.auth.principal import Principal
from modelrunner.clock import utcnow
from modelrunner.store.database import Database

TTL_SECONDS = 2.0
_MOST_KEPT = 10_000  # past this many distinct tokens the oldest verdicts are dropped


@dataclass(frozen=True)
class _Verdict:
    principal: Principal
    until: float  # on the monotonic clock
    generation: int  # accounts.tokens_generation() before the token was read


class VerifiedTokens:
    def __init__(
        self, database: Database, *, ttl: float = TTL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._database = database
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._verdicts: dict[str, _Verdict] = {}  # by sha256 of the token: no token is kept in memory

    def remembered(self, token: str) -> Principal | None:
        """Whose token this is if it was verified moments ago (within the TTL, and no token has
        been revoked in this process since); None when the store must be asked (``principal``)."""
        key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            verdict = self._verdicts.get(key)
        if verdict is not None and self._clock() < verdict.until and verdict.generation == accounts.tokens_generation():
            return verdict.principal
        return None

    def principal(self, token: str) -> Principal:
        """Whose token this is; as ``accounts.authenticate`` (Unauthenticated, Forbidden)."""
        remembered = self.remembered(token)
        if remembered is not None:
            return remembered
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        generation = accounts.tokens_generation()
        with self._database.read() as session:
            principal, expires_at = accounts.authenticate_until(session, token)
        until = now + self._ttl
        if expires_at is not None:
            until = min(until, now + (expires_at - utcnow()).total_seconds())
        with self._lock:
            if len(self._verdicts) >= _MOST_KEPT:
                self._verdicts = {k: v for k, v in self._verdicts.items() if now < v.until}
                if len(self._verdicts) >= _MOST_KEPT:
                    self._verdicts.pop(next(iter(self._verdicts)))
            self._verdicts[key] = _Verdict(principal, until, generation)
        return principal
