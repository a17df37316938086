"""A delivery's status changes only by the moves its table allows, on SQLite and PostgreSQL alike:
an illegal move is refused before any statement reaches the store, and removing a subscription
cancels only what was not sent yet."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, select

from modelrunner.auth.access import Access
from modelrunner.auth.principal import Principal
from modelrunner.clock import utcnow
from modelrunner.errors import InvalidTransition
from modelrunner.notify import subscriptions
from modelrunner.notify.delivery_transition import move_delivery
from modelrunner.notify.states import DeliveryStatus
from modelrunner.spec.access_spec import AccessSpec
from modelrunner.store import account_queries, migrate, notify_queries
from modelrunner.store.database import Database
from modelrunner.store.tables import DeliveryRow, SubscriptionRow
from tests.identities import add_user

LEASE_END = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    migrate.upgrade(db)
    yield db
    db.dispose()


@pytest.fixture
def alice(database: Database) -> int:
    add_user(database, "alice", email="alice@example.org")
    with database.read() as session:
        row = account_queries.user_by_name(session, "alice")
    assert row is not None
    return row.id


def subscription(database: Database, user_id: int) -> int:
    with database.write() as session:
        row = SubscriptionRow(user_id=user_id, model="noop", notify_on="all", channel="email", created_at=utcnow())
        return notify_queries.add_subscription(session, row).id


def delivery(database: Database, user_id: int, subscription_id: int, status: DeliveryStatus) -> int:
    now = utcnow()
    sending = status == DeliveryStatus.SENDING
    with database.write() as session:
        row = DeliveryRow(
            key=f"s{subscription_id}-{status.value}",
            kind="event",
            subscription_id=subscription_id,
            user_id=user_id,
            channel="email",
            target="alice@example.org",
            event_type="run.succeeded",
            payload={},
            status=status.value,
            attempts=1 if sending else 0,
            next_attempt_at=LEASE_END if status in (DeliveryStatus.PENDING, DeliveryStatus.SENDING) else None,
            claimed_by="server-a.example:1:1.0" if sending else None,
            created_at=now,
            updated_at=now,
        )
        notify_queries.add_deliveries(session, [row])
        return row.id


def stored(database: Database, delivery_id: int) -> tuple[Any, ...]:
    with database.read() as session:
        row = notify_queries.delivery(session, delivery_id)
        assert row is not None
        return (row.status, row.attempts, row.claimed_by, row.next_attempt_at, row.updated_at)


def test_an_illegal_delivery_move_is_refused_without_a_statement_reaching_the_store(
    database: Database, alice: int
) -> None:
    sent = delivery(database, alice, subscription(database, alice), DeliveryStatus.DELIVERED)
    before = stored(database, sent)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    with database.write() as session:
        notify_queries.delivery(session, sent)  # the transaction has begun: only the move is watched
        event.listen(database.write_engine, "before_cursor_execute", seen)
        try:
            with pytest.raises(InvalidTransition, match="a delivery that is delivered cannot become sending"):
                move_delivery(
                    session, sent, DeliveryStatus.DELIVERED, DeliveryStatus.SENDING, attempts=2, claimed_by="thief"
                )
        finally:
            event.remove(database.write_engine, "before_cursor_execute", seen)
    assert statements == []
    assert stored(database, sent) == before


def test_a_legal_move_from_a_status_the_delivery_has_left_changes_nothing(database: Database, alice: int) -> None:
    pending = delivery(database, alice, subscription(database, alice), DeliveryStatus.PENDING)
    before = stored(database, pending)
    with database.write() as session:
        # A sender that believes it holds the claim finds the delivery elsewhere.
        assert not move_delivery(
            session,
            pending,
            DeliveryStatus.SENDING,
            DeliveryStatus.DELIVERED,
            expected={"attempts": 0, "claimed_by": "server-a.example:1:1.0"},
            delivered_at=utcnow(),
        )
    assert stored(database, pending) == before


def test_unsubscribing_cancels_only_the_deliveries_not_sent_yet(database: Database, alice: int) -> None:
    removed, kept = subscription(database, alice), subscription(database, alice)
    ids = {status: delivery(database, alice, removed, status) for status in DeliveryStatus}
    other = delivery(database, alice, kept, DeliveryStatus.PENDING)
    before = {delivery_id: stored(database, delivery_id) for delivery_id in [*ids.values(), other]}

    with database.write() as session:
        subscriptions.remove(session, Access(Principal(alice, "alice"), AccessSpec()), removed)

    with database.read() as session:
        status_of = {row.id: row.status for row in session.scalars(select(DeliveryRow))}
    unsent = {DeliveryStatus.PENDING, DeliveryStatus.HELD}
    assert {status: status_of[ids[status]] for status in DeliveryStatus} == {
        status: "cancelled" if status in unsent else status.value for status in DeliveryStatus
    }
    for status in unsent:
        assert stored(database, ids[status])[3] is None  # never tried again
    for status in set(DeliveryStatus) - unsent:
        assert stored(database, ids[status]) == before[ids[status]]  # a send in flight is left to its sender
    assert stored(database, other) == before[other]
