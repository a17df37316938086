"""Webhook secrets at rest: the database holds them encrypted with a key kept in a file of its
own; deliveries are still signed with the clear secret; ``modelrunner secrets rotate-key`` (the
real CLI, on the store of a running app) changes the key without stopping deliveries; a lost or
wrong key is named in a message, not a traceback; secrets stored in clear before are encrypted by
the migration."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet, InvalidToken
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from modelrunner.auth.secret_keys import SecretKeyError, SecretKeys
from modelrunner.clock import utcnow
from modelrunner.errors import ModelrunnerError
from modelrunner.platform import Platform
from modelrunner.settings import Settings
from modelrunner.store import migrate
from modelrunner.store.database import Database
from modelrunner.store.tables import SubscriptionRow
from tests.acceptance.test_cli import cli, ok
from tests.identities import add_user, bearer
from tests.integration.runs_api import submit, wait_for_status, wait_until
from tests.notify_services import WebhookReceiver, configure

OWN_SECRET = "alices-own-secret-for-her-receiver-0042"


@pytest.fixture
def workspace(workspace: Path) -> Path:
    configure(workspace, {"webhooks": {"attempts": 3, "backoff_seconds": 0.2, "timeout_seconds": 5}})
    return workspace


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hook = WebhookReceiver()
    hook.secret = OWN_SECRET
    hook.start()
    yield hook
    hook.stop()


@pytest.fixture
def alice(platform: Platform) -> dict[str, str]:
    return bearer(add_user(platform.database, "alice", groups=["analysts"]))


def subscribe(client: TestClient, alice: dict[str, str], receiver: WebhookReceiver) -> dict[str, Any]:
    answer = client.post(
        "/api/v1/subscriptions",
        json={"model": "noop", "channel": "webhook", "url": receiver.url, "secret": receiver.secret},
        headers=alice,
    )
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def delivered_and_verified(client: TestClient, receiver: WebhookReceiver, count: int) -> None:
    """Run noop once more and wait until the receiver verified ``count`` deliveries in all."""
    run = submit(client, "noop", {"n": count})
    wait_for_status(client, run["id"], "succeeded", timeout=30)
    wait_until(lambda: len(receiver.requests()) >= count, 20, f"{count} webhook requests")
    assert [r.verified for r in receiver.requests()] == [True] * count  # signed with the clear secret


def stored_secret(database: Database) -> str:
    with database.read() as session:
        return str(session.scalars(select(SubscriptionRow.secret)).one())


def cli_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "MODELRUNNER_WORKSPACE": str(settings.workspace),
        "MODELRUNNER_DATA_DIR": str(settings.data_dir),
        "MODELRUNNER_DATABASE_URL": str(settings.database_url),
    }


def test_the_database_holds_no_clear_secret_and_deliveries_are_signed(
    client: TestClient, platform: Platform, alice: dict[str, str], receiver: WebhookReceiver
) -> None:
    subscribe(client, alice, receiver)
    delivered_and_verified(client, receiver, 1)

    stored = stored_secret(platform.database)
    assert OWN_SECRET not in stored and stored.startswith("gAAAAA")  # a Fernet token
    key_file = platform.settings.state_dir / "secrets.key"
    assert Fernet(key_file.read_text().strip()).decrypt(stored.encode()).decode() == OWN_SECRET
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    database_file = platform.settings.state_dir / "modelrunner.db"
    if database_file.exists():  # SQLite: not in the file either (nor in its write-ahead log)
        for path in database_file.parent.glob("modelrunner.db*"):
            assert OWN_SECRET.encode() not in path.read_bytes()


def test_rotating_the_key_keeps_deliveries_signed_and_the_old_key_useless(
    client: TestClient, platform: Platform, settings: Settings, alice: dict[str, str], receiver: WebhookReceiver
) -> None:
    subscribe(client, alice, receiver)
    delivered_and_verified(client, receiver, 1)
    key_file = platform.settings.state_dir / "secrets.key"
    old_key, old_ciphertext = key_file.read_text().strip(), stored_secret(platform.database)

    printed = ok("secrets", "rotate-key", env=cli_env(settings))
    assert f"new key in {key_file}; re-encrypted 1 webhook secret, dropped 1 old key" in printed

    [new_key] = key_file.read_text().split()
    assert new_key != old_key and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    new_ciphertext = stored_secret(platform.database)
    assert Fernet(new_key).decrypt(new_ciphertext.encode()).decode() == OWN_SECRET
    with pytest.raises(InvalidToken):
        Fernet(new_key).decrypt(old_ciphertext.encode())  # a backup's ciphertext needs the old key
    delivered_and_verified(client, receiver, 2)  # the running server follows the new key file


def test_a_rotation_killed_half_way_loses_nothing_and_a_second_run_finishes_it(
    client: TestClient, platform: Platform, settings: Settings, alice: dict[str, str], receiver: WebhookReceiver
) -> None:
    subscribe(client, alice, receiver)
    key_file = platform.settings.state_dir / "secrets.key"
    old_key = key_file.read_text().strip()
    # Where a rotation killed after its first step leaves things: a new key first in the file,
    # the secrets still under the old one.
    keys = SecretKeys(path=key_file)
    keys.write([Fernet.generate_key().decode(), old_key])
    delivered_and_verified(client, receiver, 1)

    printed = ok("secrets", "rotate-key", env=cli_env(settings))
    assert "re-encrypted 1 webhook secret, dropped 2 old keys" in printed
    assert len(key_file.read_text().split()) == 1
    delivered_and_verified(client, receiver, 2)


def test_a_wrong_or_missing_key_is_named_in_a_message(
    client: TestClient, platform: Platform, settings: Settings, alice: dict[str, str], receiver: WebhookReceiver
) -> None:
    subscribe(client, alice, receiver)
    key_file = platform.settings.state_dir / "secrets.key"
    right_key = key_file.read_text()
    env = cli_env(settings)

    key_file.write_text(Fernet.generate_key().decode() + "\n")  # somebody replaced the key file
    wrong = cli("secrets", "rotate-key", env=env)
    assert wrong.returncode == 1 and wrong.stderr.startswith("error: ")
    assert str(key_file) in wrong.stderr and "cannot be decrypted" in wrong.stderr
    with pytest.raises(SecretKeyError, match=str(key_file)):
        Platform(settings).prepare_store()  # modelrunner serve refuses to start, saying why

    key_file.unlink()  # or lost it
    missing = cli("secrets", "rotate-key", env=env)
    assert missing.returncode == 1 and f"the key file {key_file} does not exist" in missing.stderr
    assert not key_file.exists()  # no new key made up in its place

    key_file.write_text(right_key)
    ok("secrets", "rotate-key", env=env)  # with the right key back, all is well


def test_secrets_stored_in_clear_before_are_encrypted_by_the_migration(settings: Settings) -> None:
    database = Database(settings.resolved_database_url)
    try:
        migrate.upgrade(database, "0005")
        with database.write() as session:
            session.execute(
                text("INSERT INTO users (name, is_admin, disabled, created_at) VALUES ('old', false, false, :at)"),
                {"at": utcnow()},
            )
            session.execute(
                text(
                    "INSERT INTO subscriptions (user_id, model, notify_on, channel, url, secret, created_at) "
                    "SELECT id, 'noop', 'all', 'webhook', 'https://example.org/hook', :secret, :at FROM users"
                ),
                {"secret": OWN_SECRET, "at": utcnow()},
            )

        with pytest.raises(ModelrunnerError, match="modelrunner db upgrade"):
            migrate.upgrade(database)  # without the key nothing is encrypted, and nothing lost
        assert stored_secret(database) == OWN_SECRET

        printed = ok("db", "upgrade", env=cli_env(settings))
        assert "is at revision" in printed
        stored = stored_secret(database)
        assert OWN_SECRET not in stored
        assert SecretKeys.of(settings).decrypt(stored) == OWN_SECRET
    finally:
        database.dispose()
