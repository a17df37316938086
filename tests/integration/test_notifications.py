"""Notifications with the real things on the other side: an SMTP server (aiosmtpd) receiving the
mails, a webhook receiver verifying signatures and failing on purpose, and ``modelrunner serve``
killed between a run's success and its mail. Subscriptions and deliveries go through the HTTP API
as their users; the digest's clock is driven by the test, as test_schedules drives schedules."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from modelrunner.clock import utcnow
from modelrunner.engine.runner_identity import HOST
from modelrunner.engine.states import RunStatus
from modelrunner.engine.transition import transition
from modelrunner.notify.deliveries import Deliverer
from modelrunner.notify.digest import Digest
from modelrunner.notify.outbox import Outbox
from modelrunner.platform import Platform
from modelrunner.settings import Settings
from modelrunner.store import account_queries, notify_queries, queries
from modelrunner.store.database import Database
from modelrunner.store.tables import DeliveryRow, EventRow, SubscriptionRow
from tests.conftest import Server, admin_client
from tests.identities import add_user, bearer
from tests.integration.runs_api import new_run_row, submit, wait_for_status, wait_until
from tests.notify_services import SmtpServer, WebhookReceiver, configure, email_settings

QUICK_WEBHOOKS = {"attempts": 3, "backoff_seconds": 0.2, "timeout_seconds": 5}
BASE_URL = "https://models.example.org"
SMTP_PASSWORD = "smtp-pass-Zq81-never-shown"


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def notified(workspace: Path, smtp: SmtpServer) -> Path:
    """The workspace with e-mail through the test SMTP server, quick webhooks and a daily digest."""
    configure(
        workspace,
        {
            "base_url": BASE_URL,
            "email": email_settings(smtp),
            "webhooks": QUICK_WEBHOOKS,
            "digest": {"cron": "0 6 1 1 *", "timezone": "UTC"},  # yearly: no real tick during a test
        },
    )
    return workspace


def person(platform: Platform, name: str, *, email: str | None = "", groups: tuple[str, ...] = ("analysts",)) -> Any:
    """A user's Authorization header; their address is <name>@example.org unless given."""
    address = f"{name}@example.org" if email == "" else email
    return bearer(add_user(platform.database, name, groups=groups, email=address))


def subscribe(client: TestClient, headers: Any, **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/subscriptions", json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def deliveries(client: TestClient, headers: Any | None = None, **query: Any) -> list[dict[str, Any]]:
    response = client.get("/api/v1/deliveries", params=query, headers=headers)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def delivery(client: TestClient, delivery_id: int, headers: Any | None = None) -> dict[str, Any]:
    response = client.get(f"/api/v1/deliveries/{delivery_id}", headers=headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def all_settled(client: TestClient) -> bool:
    """No delivery is waiting to be sent (the admin sees everyone's)."""
    return not deliveries(client, status=["pending", "sending"])


def run_to_end(client: TestClient, model: str, params: dict[str, Any] | None = None, **body: Any) -> dict[str, Any]:
    run = submit(client, model, params, **body)
    expected = "failed" if model == "failing" else "succeeded"
    return wait_for_status(client, run["id"], expected, timeout=30)


# --- e-mail -------------------------------------------------------------------------------------


def test_each_subscriber_gets_one_mail_per_run_that_ended_as_they_asked(
    notified: Path, client: TestClient, platform: Platform, smtp: SmtpServer
) -> None:
    alice, bob, carol = (person(platform, name) for name in ("alice", "bob", "carol"))
    everything = subscribe(client, alice, model="noop", channel="email")
    subscribe(client, bob, model="noop", channel="email", on="failures")
    subscribe(client, carol, model="failing", channel="email", on="failures")

    succeeded = run_to_end(client, "noop", {"n": 1})
    failed = run_to_end(client, "failing")

    wait_until(lambda: smtp.mailbox.to("carol@example.org"), 20, "carol's mail about the failure")
    wait_until(lambda: all_settled(client), 20, "every delivery sent")
    [mail] = smtp.mailbox.to("alice@example.org")
    assert mail["Subject"] == f"[modelrunner] run {succeeded['id']} of noop succeeded (results changed)"
    assert mail["From"] == "modelrunner@example.org"
    text = mail.get_content()
    assert f"{BASE_URL}/api/v1/runs/{succeeded['id']}" in text and "params.json" in text
    [sent] = deliveries(client, alice)
    assert sent["subscription_id"] == everything["id"] and sent["status"] == "delivered"
    assert sent["key"] == f"s{everything['id']}-e{sent['event_id']}"
    assert mail["Message-ID"] == f"<{sent['key']}@example.org>"  # the idempotency key, for deduplication
    assert mail["X-Modelrunner-Delivery"] == sent["key"]
    [failure] = smtp.mailbox.to("carol@example.org")
    assert failure["Subject"] == f"[modelrunner] run {failed['id']} of failing failed"
    assert "Error:" in failure.get_content()
    # Bob asked for failures of noop only; its success sent him nothing.
    assert smtp.mailbox.to("bob@example.org") == [] and deliveries(client, bob) == []
    assert len(smtp.mailbox.all()) == 2


def test_results_changed_mails_only_results_that_differ_from_the_previous_ones(
    notified: Path, client: TestClient, platform: Platform, smtp: SmtpServer
) -> None:
    alice = person(platform, "alice")
    subscribe(client, alice, model="noop", channel="email", on="results_changed")

    first = run_to_end(client, "noop", {"n": 5})  # a first result counts as changed
    wait_until(lambda: smtp.mailbox.to("alice@example.org"), 20, "the first result's mail")
    again = run_to_end(client, "noop", {"n": 5}, cache="refresh")  # computed again: identical outputs
    hit = run_to_end(client, "noop", {"n": 5})  # a cache hit computes nothing
    other = run_to_end(client, "noop", {"n": 6})  # other parameters: a first result of its own

    wait_until(lambda: len(smtp.mailbox.to("alice@example.org")) == 2, 20, "the mail of the other result")
    wait_until(lambda: all_settled(client), 20, "every delivery sent")
    assert not again["cache_hit"] and hit["cache_hit"]
    subjects = [mail["Subject"] for mail in smtp.mailbox.to("alice@example.org")]
    assert subjects == [
        f"[modelrunner] run {first['id']} of noop succeeded (results changed)",
        f"[modelrunner] run {other['id']} of noop succeeded (results changed)",
    ]
    assert {d["run_id"] for d in deliveries(client, alice)} == {first["id"], other["id"]}


def test_the_smtp_password_comes_from_the_environment_or_a_file_and_is_never_shown(
    workspace: Path, platform: Platform, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    smtp = SmtpServer(credentials=("mailer", SMTP_PASSWORD))
    smtp.start()
    wrong = "wrong-pass-Kk27-never-shown"
    monkeypatch.setenv("MR_TEST_SMTP_PASSWORD", wrong)
    settings = email_settings(smtp, username="mailer", password_env="MR_TEST_SMTP_PASSWORD", attempts=20)
    configure(workspace, {"email": settings})
    caplog.set_level(logging.INFO)
    try:
        with admin_client(platform) as client:
            alice = person(platform, "alice")
            subscribe(client, alice, model="noop", channel="email")
            run_to_end(client, "noop")

            def refused() -> dict[str, Any] | None:
                found = deliveries(client, alice)
                return delivery(client, found[0]["id"], alice) if found and found[0]["attempt_count"] >= 2 else None

            shown = wait_until(refused, 20, "attempts refused by the SMTP server")
            assert "535" in str(shown["attempts"][0]["error"])  # authentication failed, and says so
            # The right one, from a file (`<password_env>_FILE`), so it need not be in any environment.
            password_file = workspace.parent / "smtp-password"
            password_file.write_text(f"{SMTP_PASSWORD}\n")
            monkeypatch.delenv("MR_TEST_SMTP_PASSWORD")
            monkeypatch.setenv("MR_TEST_SMTP_PASSWORD_FILE", str(password_file))
            wait_until(lambda: smtp.mailbox.to("alice@example.org"), 20, "the mail once the password is right")
            wait_until(lambda: all_settled(client), 20, "the delivery recorded")

            [sent] = deliveries(client, alice)
            answers = [
                client.get("/api/v1/deliveries").text,
                client.get(f"/api/v1/deliveries/{sent['id']}").text,
                client.get("/api/v1/subscriptions").text,
            ]
    finally:
        smtp.stop()
    for secret in (SMTP_PASSWORD, wrong):
        assert all(secret not in answer for answer in answers)
        assert secret not in caplog.text
        assert secret not in stored_events(platform.database)
    assert "attempt 1 of 20 failed" in caplog.text  # the failures were logged, without the password


# --- webhooks -----------------------------------------------------------------------------------


def test_webhooks_are_signed_retried_with_backoff_and_every_attempt_is_recorded(
    notified: Path, client: TestClient, platform: Platform
) -> None:
    receiver = WebhookReceiver(fail_first=2)
    receiver.start()
    try:
        alice = person(platform, "alice")
        created = subscribe(client, alice, model="noop", channel="webhook", url=receiver.url)
        secret = created["secret"]
        assert isinstance(secret, str) and len(secret) >= 40  # generated, 256 bits
        receiver.secret = secret

        run = run_to_end(client, "noop", {"n": 3})
        wait_until(lambda: any(r.answered == 200 for r in receiver.requests()), 20, "a delivery answered 200")
        wait_until(lambda: all_settled(client), 20, "the delivery recorded")
    finally:
        receiver.stop()

    requests = receiver.requests()
    assert [r.answered for r in requests] == [500, 500, 200]
    assert all(r.verified for r in requests)  # signature and timestamp checked on every attempt
    assert len({r.delivery for r in requests}) == 1  # one delivery, retried
    body = requests[-1].body
    assert requests[-1].event == body["event"] == "run.succeeded"
    assert (body["run_id"], body["model"], body["status"], body["results_changed"]) == (
        run["id"],
        "noop",
        "succeeded",
        True,
    )
    assert [o["path"] for o in body["outputs"]] == ["params.json"] and len(body["outputs"][0]["sha256"]) == 64
    assert body["links"]["run"] == f"{BASE_URL}/api/v1/runs/{run['id']}"

    [listed] = deliveries(client, alice, subscription=created["id"])
    assert (listed["status"], listed["attempt_count"], listed["key"]) == ("delivered", 3, requests[0].delivery)
    shown = delivery(client, listed["id"], alice)
    assert [a["http_status"] for a in shown["attempts"]] == [500, 500, 200]
    assert [a["ok"] for a in shown["attempts"]] == [False, False, True]
    starts = [dt.datetime.fromisoformat(a["started_at"]) for a in shown["attempts"]]
    assert starts[1] - starts[0] >= dt.timedelta(seconds=0.2)  # backoff: 0.2 s, then 0.4 s
    assert starts[2] - starts[1] >= dt.timedelta(seconds=0.4)
    assert shown["payload"] == body

    # The secret was shown once, at creation, and never again.
    answers = [
        client.get("/api/v1/subscriptions", headers=alice).text,
        client.get("/api/v1/subscriptions").text,
        client.get("/api/v1/deliveries").text,
        json.dumps(shown),
        client.delete(f"/api/v1/subscriptions/{created['id']}", headers=alice).text,
    ]
    assert all(secret not in answer for answer in answers)
    assert secret not in stored_events(platform.database)
    assert secret not in json.dumps([r.body for r in requests])


def test_a_receiver_that_cannot_verify_the_signature_fails_the_delivery_after_the_last_attempt(
    notified: Path, client: TestClient, platform: Platform
) -> None:
    receiver = WebhookReceiver()
    receiver.secret = "the-receivers-own-secret-0001"
    receiver.start()
    try:
        alice = person(platform, "alice")
        given = "a-different-secret-of-alice-9"
        created = subscribe(client, alice, model="noop", channel="webhook", url=receiver.url, secret=given)
        assert created["secret"] is None  # she brought her own: nothing to show

        run_to_end(client, "noop")
        wait_until(lambda: deliveries(client, alice, status="failed"), 20, "the delivery failed")
    finally:
        receiver.stop()

    assert [(r.verified, r.answered) for r in receiver.requests()] == [(False, 401)] * 3
    [failed] = deliveries(client, alice)
    assert failed["attempt_count"] == 3 and failed["last_error"] == "the receiver answered 401 Unauthorized"
    assert [a["http_status"] for a in delivery(client, failed["id"], alice)["attempts"]] == [401, 401, 401]


# --- who sees what ------------------------------------------------------------------------------


def test_users_see_and_manage_only_their_own_subscriptions_and_deliveries(
    notified: Path, client: TestClient, platform: Platform, smtp: SmtpServer
) -> None:
    alice, bob = person(platform, "alice"), person(platform, "bob")
    mine = subscribe(client, alice, model="noop", channel="email")
    run_to_end(client, "noop")
    [sent] = wait_until(lambda: deliveries(client, alice, status="delivered"), 20, "alice's mail")

    assert client.get("/api/v1/subscriptions", headers=bob).json() == []
    assert client.delete(f"/api/v1/subscriptions/{mine['id']}", headers=bob).status_code == 404
    assert client.get(f"/api/v1/deliveries/{sent['id']}", headers=bob).status_code == 404
    assert client.get("/api/v1/deliveries", params={"subscription": mine["id"]}, headers=bob).status_code == 404
    assert deliveries(client, bob) == []
    # A site admin sees everyone's.
    assert [(s["id"], s["user"]) for s in client.get("/api/v1/subscriptions").json()] == [(mine["id"], "alice")]
    assert delivery(client, sent["id"])["user"] == "alice"
    # Nobody signed in: 401.
    anonymous = {"Authorization": ""}
    assert client.get("/api/v1/subscriptions", headers=anonymous).status_code == 401
    assert (
        client.post("/api/v1/subscriptions", json={"model": "noop", "channel": "email"}, headers=anonymous).status_code
        == 401
    )

    removed = client.delete(f"/api/v1/subscriptions/{mine['id']}", headers=alice)
    assert removed.status_code == 200 and removed.json()["id"] == mine["id"]
    assert client.get("/api/v1/subscriptions", headers=alice).json() == []
    assert client.delete(f"/api/v1/subscriptions/{mine['id']}", headers=alice).status_code == 404
    assert deliveries(client, alice) == [sent]  # history stays


def test_subscribing_needs_view_on_the_model_an_address_and_a_run_still_going(
    notified: Path, client: TestClient, platform: Platform
) -> None:
    alice = person(platform, "alice")
    nomail = person(platform, "nomail", email=None)

    def post(headers: Any, **body: Any) -> httpx.Response:
        return client.post("/api/v1/subscriptions", json=body, headers=headers)

    hidden = post(alice, model="sleeper", channel="email")  # analysts may not view sleeper
    assert hidden.status_code == 403 and "'view' on model 'sleeper'" in hidden.json()["detail"]
    assert post(None, model="nope", channel="email").status_code == 404  # the admin: the model is unknown
    no_address = post(nomail, model="noop", channel="email")
    assert no_address.status_code == 422 and no_address.json()["detail"][0]["loc"] == ["body", "channel"]
    assert "no e-mail address" in no_address.json()["detail"][0]["msg"]
    assert post(nomail, model="noop", channel="webhook", url="https://hooks.example.org/x").status_code == 201
    assert post(alice, model="noop", run_id=1, channel="email").status_code == 422
    assert post(alice, model="noop", channel="webhook", url="ftp://example.org").status_code == 422
    short = post(alice, model="noop", channel="webhook", url="https://example.org/h", secret="tiny-secret")
    assert short.status_code == 422 and "tiny-secret" not in short.text
    assert post(alice, model="noop", channel="email", url="https://example.org/h").status_code == 422

    assert post(alice, model="noop", channel="email").status_code == 201
    twice = post(alice, model="noop", channel="email")
    assert twice.status_code == 409 and "already" in twice.json()["detail"]

    ended = run_to_end(client, "noop")
    over = post(alice, run_id=ended["id"], channel="email")
    assert over.status_code == 409 and "has ended" in over.json()["detail"]
    assert post(alice, run_id=999999, channel="email").status_code == 404


def test_a_run_subscription_hears_of_that_run_and_leaving_the_group_ends_notifications(
    notified: Path, client: TestClient, platform: Platform, smtp: SmtpServer
) -> None:
    alice, bob = person(platform, "alice"), person(platform, "bob", groups=("watchers",))
    configure(
        notified,
        {"base_url": BASE_URL, "email": email_settings(smtp), "webhooks": QUICK_WEBHOOKS},
        groups={"analysts": ["noop", "sleeper"], "watchers": ["noop"]},
    )
    going = submit(client, "sleeper", {"seconds": 0.5})
    subscribe(client, alice, run_id=going["id"], channel="email")
    subscribe(client, bob, model="noop", channel="email")
    wait_for_status(client, going["id"], "succeeded", timeout=30)
    wait_until(lambda: smtp.mailbox.to("alice@example.org"), 20, "the mail about alice's run")

    # The watchers lose noop: bob hears nothing more, though his subscription stays.
    configure(
        notified,
        {"base_url": BASE_URL, "email": email_settings(smtp), "webhooks": QUICK_WEBHOOKS},
        groups={"analysts": ["noop", "sleeper"], "watchers": ["sleeper"]},
    )
    subscribe(client, alice, model="noop", channel="email")
    run = run_to_end(client, "noop")
    wait_until(lambda: len(smtp.mailbox.to("alice@example.org")) == 2, 20, "alice's mail about noop")
    wait_until(lambda: all_settled(client), 20, "every delivery sent")
    assert smtp.mailbox.to("bob@example.org") == []
    assert [d["run_id"] for d in deliveries(client, alice)] == [run["id"], going["id"]]
    assert len(client.get("/api/v1/subscriptions", headers=bob).json()) == 1


# --- digests ------------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def test_a_digest_tick_sends_one_mail_per_subscriber_and_none_when_nothing_happened(
    notified: Path, client: TestClient, platform: Platform, smtp: SmtpServer
) -> None:
    alice, bob, carol = (person(platform, name) for name in ("alice", "bob", "carol"))
    subscribe(client, alice, model="noop", channel="digest")
    subscribe(client, alice, model="failing", channel="digest")
    subscribe(client, bob, model="failing", channel="digest", on="failures")
    dropped = subscribe(client, carol, model="noop", channel="digest")
    runs = [run_to_end(client, "noop", {"n": 1}), run_to_end(client, "noop", {"n": 2}), run_to_end(client, "failing")]
    wait_until(lambda: len(deliveries(client, status="held")) == 6, 20, "six items held for the digest")
    client.delete(f"/api/v1/subscriptions/{dropped['id']}", headers=carol)  # carol's items are cancelled
    assert smtp.mailbox.all() == []  # nothing is mailed before the digest

    # The server's own notifier has seen the digest schedule: its next tick is 1 January, 06:00 UTC.
    clock = Clock(utcnow())
    servers = [Digest(platform.database, platform.workspace, clock=clock) for _ in range(2)]
    next_tick = wait_until(servers[0].next_fire_at, 10, "the digest's first tick computed")
    assert (next_tick.month, next_tick.day, next_tick.hour, next_tick.minute) == (1, 1, 6, 0)
    assert next_tick > clock.now
    assert servers[0].tick() == 0  # not yet

    clock.now = next_tick + dt.timedelta(minutes=1)
    created = fire_together(servers)

    assert sorted(created) == [0, 2]  # one tick, fired once across two "servers": a mail for alice and bob
    wait_until(lambda: len(smtp.mailbox.all()) == 2, 20, "the two digest mails")
    wait_until(lambda: all_settled(client), 20, "the digests recorded")
    [to_alice] = smtp.mailbox.to("alice@example.org")
    [to_bob] = smtp.mailbox.to("bob@example.org")
    assert to_alice["Subject"] == "[modelrunner] digest: 3 runs ended"
    assert to_bob["Subject"] == "[modelrunner] digest: 1 run ended"
    assert all(f"run {run['id']} of" in to_alice.get_content() for run in runs)
    assert f"run {runs[2]['id']} of failing failed" in to_bob.get_content()
    assert to_alice["Message-ID"].startswith(f"<digest-u{_user_id(platform.database, 'alice')}-")
    [mail] = deliveries(client, alice, status="delivered")
    assert mail["kind"] == "digest" and mail["subscription_id"] is None
    assert {d["digest_id"] for d in deliveries(client, alice, status="digested")} == {mail["id"]}
    assert [d["status"] for d in deliveries(client, carol)] == ["cancelled"] * 2

    # The next tick: nothing happened since, so nobody gets a mail.
    following = servers[0].next_fire_at()
    assert following is not None and following.year == next_tick.year + 1
    clock.now = following + dt.timedelta(minutes=1)
    assert fire_together(servers) == [0, 0]
    assert servers[0].next_fire_at() == following.replace(year=following.year + 1)  # the tick did fire
    time.sleep(0.5)
    assert len(smtp.mailbox.all()) == 2


def fire_together(digests: list[Digest]) -> list[int]:
    """Tick every digest at once, each on a thread of its own, as servers sharing a store would."""
    results: list[int] = []
    barrier = threading.Barrier(len(digests))

    def fire(digest: Digest) -> None:
        barrier.wait()
        results.append(digest.tick())

    threads = [threading.Thread(target=fire, args=(digest,)) for digest in digests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


# --- exactly once -------------------------------------------------------------------------------


@pytest.fixture
def store(platform: Platform) -> Iterator[Platform]:
    """The platform's database migrated, nothing started: the test drives outboxes and senders."""
    platform.prepare_store()
    yield platform
    platform.database.dispose()


def test_two_servers_create_each_delivery_once_and_send_it_once(
    notified: Path, store: Platform, smtp: SmtpServer
) -> None:
    database = store.database
    add_user(database, "alice", email="alice@example.org", groups=["analysts"])
    outboxes = [
        Outbox(database, store.workspace, store.artifacts, default_base_url=BASE_URL, settle_seconds=0)
        for _ in range(2)
    ]
    outboxes[0].collect()  # the first look starts the cursor after the history
    with database.write() as session:
        alice_id = _user_row_id(session, "alice")
        notify_queries.add_subscription(
            session,
            SubscriptionRow(user_id=alice_id, model="noop", notify_on="all", channel="email", created_at=utcnow()),
        )
    run_ids = []
    for number in range(30):
        with database.write() as session:
            run = queries.add_run(session, new_run_row(status="running", params={"n": number}))
            transition(session, run.id, RunStatus.SUCCEEDED)
            run_ids.append(run.id)

    together(lambda index: drain(outboxes[index].collect), 2)

    with database.read() as session:
        rows = list(session.scalars(select(DeliveryRow)))
    assert sorted(row.run_id for row in rows) == run_ids and len({row.key for row in rows}) == 30

    senders = [
        Deliverer(database, store.workspace, f"server-{index}.example:{100 + index}:1.0", store.secret_keys)
        for index in range(2)
    ]
    try:
        together(lambda index: drain(senders[index].deliver_due, until=lambda: sent_all(database, 30)), 2)
        for sender in senders:
            sender.wait(20)
    finally:
        for sender in senders:
            sender.close()
    mails = smtp.mailbox.to("alice@example.org")
    assert len(mails) == 30 and len({mail["Message-ID"] for mail in mails}) == 30
    with database.read() as session:
        assert all(len(notify_queries.attempts_of(session, row.id)) == 1 for row in rows)


def test_a_delivery_claimed_by_a_server_that_died_is_taken_over_and_the_lost_attempt_recorded(
    notified: Path, store: Platform, smtp: SmtpServer
) -> None:
    database = store.database
    add_user(database, "alice", email="alice@example.org", groups=["analysts"])
    now = utcnow()
    dead = f"{HOST}:999999:1.0"  # this host, a process that does not exist
    with database.write() as session:
        row = DeliveryRow(
            key="s1-e1",
            kind="event",
            user_id=_user_row_id(session, "alice"),
            channel="email",
            target="alice@example.org",
            event_type="run.succeeded",
            payload=_payload(),
            status="sending",
            attempts=1,
            next_attempt_at=now + dt.timedelta(hours=1),  # its lease has long to go
            claimed_by=dead,
            created_at=now,
            updated_at=now,
        )
        notify_queries.add_deliveries(session, [row])
    sender = Deliverer(database, store.workspace, "server-b.example:1:1.0", store.secret_keys)
    try:
        assert sender.deliver_due() == 1
        sender.wait(20)
    finally:
        sender.close()

    assert len(smtp.mailbox.to("alice@example.org")) == 1
    with database.read() as session:
        found = notify_queries.delivery(session, row.id)
        attempts = notify_queries.attempts_of(session, row.id)
    assert found is not None and (found.status, found.attempts) == ("delivered", 2)
    assert [(a.number, a.ok) for a in attempts] == [(1, False), (2, True)]
    assert "may have been delivered" in str(attempts[0].error) and dead in str(attempts[0].error)


# --- a crash between "run succeeded" and "e-mail sent" ------------------------------------------


def test_a_run_that_succeeds_while_mail_is_down_is_mailed_exactly_once_after_a_sigkill(
    workspace: Path, server_env: dict[str, str], tmp_path: Path
) -> None:
    smtp = SmtpServer(credentials=("mailer", SMTP_PASSWORD))  # down for now
    receiver = WebhookReceiver()
    receiver.start()
    configure(
        workspace,
        {
            "email": email_settings(
                smtp, username="mailer", password_env="MR_TEST_SMTP_PASSWORD", attempts=50, backoff_seconds=0.3
            ),
            "webhooks": QUICK_WEBHOOKS,
        },
    )
    server = Server({**server_env, "MR_TEST_SMTP_PASSWORD": SMTP_PASSWORD}, tmp_path / "server.log")
    server.start()
    try:
        database = Database(server.env["MODELRUNNER_DATABASE_URL"])
        tokens = {name: add_user(database, name, email=f"{name}@example.org", groups=["analysts"]) for name in "ab"}
        database.dispose()
        api = httpx.Client(base_url=server.url, timeout=10)
        for token in tokens.values():
            response = api.post(
                "/api/v1/subscriptions", json={"model": "noop", "channel": "email"}, headers=bearer(token)
            )
            assert response.status_code == 201, response.text
        hook = api.post(
            "/api/v1/subscriptions",
            json={"model": "noop", "channel": "webhook", "url": receiver.url},
            headers=bearer(tokens["a"]),
        ).json()
        receiver.secret = hook["secret"]

        run = api.post("/api/v1/models/noop/runs", json={"params": {}}, headers=server.headers).json()
        wait_until(
            lambda: api.get(f"/api/v1/runs/{run['id']}", headers=server.headers).json()["status"] == "succeeded",
            30,
            "the run succeeded",
        )
        server.kill()  # SIGKILL: whatever was about to be mailed was not
        assert smtp.mailbox.all() == []
        smtp.start()
        server.start()

        for name in "ab":
            wait_until(lambda name=name: smtp.mailbox.to(f"{name}@example.org"), 30, f"the mail to {name}")
        time.sleep(1.5)  # time enough for a second mail, if there were one
        assert [len(smtp.mailbox.to(f"{name}@example.org")) for name in "ab"] == [1, 1]
        wait_until(lambda: [r for r in receiver.requests() if r.answered == 200], 30, "the webhook")
        assert len(receiver.requests()) == 1 and receiver.requests()[0].verified
        api.close()
    finally:
        server.stop()
        smtp.stop()
        receiver.stop()
    log = server.log_path.read_text()
    for secret in (SMTP_PASSWORD, hook["secret"], *tokens.values(), server.env["MODELRUNNER_TOKEN"]):
        assert secret not in log


# --- helpers ------------------------------------------------------------------------------------


def stored_events(database: Database) -> str:
    with database.read() as session:
        return json.dumps([row.data for row in session.scalars(select(EventRow))])


def together(work: Any, count: int) -> None:
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            work(index)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def drain(step: Any, until: Any = None, timeout: float = 20) -> None:
    """Call ``step`` until it does nothing more (or ``until`` holds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = step()
        if until is not None:
            if until():
                return
            time.sleep(0.02)
        elif not done:
            return
    raise AssertionError(f"still busy after {timeout}s")


def sent_all(database: Database, count: int) -> bool:
    with database.read() as session:
        return (
            len(
                notify_queries.deliveries(
                    session, user_id=None, subscription_id=None, statuses=["delivered"], before_id=None, limit=count + 1
                )
            )
            == count
        )


def _user_row_id(session: Any, name: str) -> int:
    row = account_queries.user_by_name(session, name)
    assert row is not None
    return row.id


def _user_id(database: Database, name: str) -> int:
    with database.read() as session:
        return _user_row_id(session, name)


def _payload() -> dict[str, Any]:
    return {
        "delivery": "s1-e1",
        "event": "run.succeeded",
        "event_id": 1,
        "occurred_at": utcnow().isoformat(),
        "subscription_id": 1,
        "run_id": 1,
        "model": "noop",
        "step": None,
        "status": "succeeded",
        "error": None,
        "params": {},
        "results_changed": True,
        "outputs": [],
        "outputs_total": 0,
        "links": {"run": f"{BASE_URL}/api/v1/runs/1", "outputs": "", "logs": f"{BASE_URL}/api/v1/runs/1/logs"},
    }


def test_a_server_whose_profile_says_notify_false_sends_nothing_and_the_next_one_does(
    notified: Path, settings: Settings, smtp: SmtpServer
) -> None:
    spec = yaml.safe_load((notified / "modelrunner.yaml").read_text())
    spec["profiles"] = {"test": {"notify": False}}
    (notified / "modelrunner.yaml").write_text(yaml.safe_dump(spec))

    quiet = Platform(settings.model_copy(update={"profile": "test"}))
    with admin_client(quiet) as client:
        alice = person(quiet, "alice")
        subscribe(client, alice, model="noop", channel="email")
        run = run_to_end(client, "noop", {"n": 3})
        time.sleep(10 * settings.poll_seconds)  # ten notifier ticks, had it been running
        assert deliveries(client, alice) == []
    assert smtp.mailbox.all() == []

    with admin_client(Platform(settings)) as client:
        wait_until(lambda: smtp.mailbox.to("alice@example.org"), 20, "the mail, from a server that notifies")
    [mail] = smtp.mailbox.all()
    assert f"run {run['id']} of noop succeeded" in mail["Subject"]
