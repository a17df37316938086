"""Verified bearer tokens are kept a moment in memory: a burst of requests costs one store read,
and a revoked, expired or disabled user's token stops working within the moment."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import event

from modelrunner.auth import accounts
from modelrunner.auth.verified_tokens import VerifiedTokens
from modelrunner.errors import Unauthenticated
from modelrunner.platform import Platform


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def carol(platform: Platform) -> str:
    platform.prepare_store()
    with platform.database.write() as session:
        accounts.add_user(session, "carol")
        return accounts.create_token(session, "carol").token


def _reads(platform: Platform) -> list[str]:
    seen: list[str] = []
    event.listen(platform.database.read_engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def test_a_burst_of_requests_reads_the_token_once(platform: Platform, carol: str) -> None:
    tokens = VerifiedTokens(platform.database, clock=_Clock())
    reads = _reads(platform)
    principals = {tokens.principal(carol).name for _ in range(50)}
    assert principals == {"carol"}
    assert len([sql for sql in reads if "api_tokens" in sql]) == 1


def test_a_revoked_token_is_refused_once_the_moment_has_passed(platform: Platform, carol: str) -> None:
    clock = _Clock()
    tokens = VerifiedTokens(platform.database, ttl=2.0, clock=clock)
    tokens.principal(carol)
    with platform.database.write() as session:
        accounts.revoke_token(session, accounts.list_tokens(session, "carol")[0].id)
        accounts.set_disabled(session, "carol", True)
    clock.now += 2.0
    with pytest.raises(Unauthenticated):
        tokens.principal(carol)


def test_a_wrong_token_is_checked_every_time(platform: Platform, carol: str) -> None:
    tokens = VerifiedTokens(platform.database, clock=_Clock())
    reads = _reads(platform)
    for _ in range(3):
        with pytest.raises(Unauthenticated):
            tokens.principal(carol[:-1] + ("x" if carol[-1] != "x" else "y"))
    assert len([sql for sql in reads if "api_tokens" in sql]) == 3


def test_a_verdict_never_outlives_the_token(platform: Platform) -> None:
    platform.prepare_store()
    with platform.database.write() as session:
        accounts.add_user(session, "dora")
        brief = accounts.create_token(session, "dora", expires_in=0.5).token
    clock = _Clock()
    tokens = VerifiedTokens(platform.database, ttl=60.0, clock=clock)
    tokens.principal(brief)
    time.sleep(0.6)  # the store judges expiry by the wall clock
    clock.now += 1.0
    with pytest.raises(Unauthenticated, match="expired"):
        tokens.principal(brief)
