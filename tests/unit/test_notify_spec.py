"""``notifications:`` in modelrunner.yaml: what `modelrunner check` reports, by field, without
ever repeating a password; webhook signatures; retry delays; what a notification says."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelrunner.engine.states import RunStatus
from modelrunner.notify import messages, webhooks
from modelrunner.notify.deliveries import Retry
from modelrunner.notify.sent import redacted
from modelrunner.notify.states import NotifyOn, wants
from modelrunner.spec.notify_spec import NotificationsSpec, SmtpSecurity
from modelrunner.spec.workspace import Workspace

EMAIL = {"host": "smtp.example.org", "sender": "models@example.org"}


def problems(tmp_path: Path, notifications: dict[str, Any]) -> list[tuple[str, str]]:
    (tmp_path / "modelrunner.yaml").write_text(yaml.safe_dump({"notifications": notifications}))
    return [(p.field, p.message) for p in Workspace(tmp_path).problems()]


def test_a_complete_configuration_has_no_problems(tmp_path: Path) -> None:
    config = {
        "base_url": "https://models.example.org/",
        "email": {**EMAIL, "username": "models", "password_env": "SMTP_PASSWORD", "security": "ssl"},
        "webhooks": {"attempts": 4, "backoff_seconds": 5, "timeout_seconds": 3},
        "digest": {"cron": "0 6 * * 1-5", "timezone": "Europe/Berlin"},
    }
    assert problems(tmp_path, config) == []
    spec = NotificationsSpec.model_validate(config)
    assert spec.base_url == "https://models.example.org"
    assert spec.email is not None and spec.email.smtp_port == 465
    plain = NotificationsSpec.model_validate({"email": EMAIL}).email
    assert plain is not None and (plain.smtp_port, plain.security) == (587, SmtpSecurity.STARTTLS)
    relay = NotificationsSpec.model_validate({"email": {**EMAIL, "security": "none"}}).email
    assert relay is not None and relay.smtp_port == 25


@pytest.mark.parametrize(
    ("config", "field", "says"),
    [
        ({"email": {"sender": "a@b.org"}}, "notifications.email.host", "is required"),
        ({"email": {**EMAIL, "sender": "nobody"}}, "notifications.email.sender", "is not an e-mail address"),
        ({"email": {**EMAIL, "security": "tls"}}, "notifications.email.security", "starttls"),
        ({"email": {**EMAIL, "username": "u"}}, "notifications.email", "username needs password_env"),
        ({"email": {**EMAIL, "port": 0}}, "notifications.email.port", "greater than or equal to 1"),
        ({"webhooks": {"attempts": 0}}, "notifications.webhooks.attempts", "greater than or equal to 1"),
        ({"webhooks": {"backoff_seconds": -1}}, "notifications.webhooks.backoff_seconds", "greater than 0"),
        ({"digest": {"cron": "every day"}}, "notifications.digest.cron", "five-field cron"),
        ({"digest": {"timezone": "Mars/Olympus"}}, "notifications.digest.timezone", "not a known time zone"),
        ({"base_url": "models.example.org"}, "notifications.base_url", "http:// or https://"),
        ({"slack": {}}, "notifications.slack", "is not a known field"),
    ],
)
def test_problems_are_reported_by_field(tmp_path: Path, config: dict[str, Any], field: str, says: str) -> None:
    found = problems(tmp_path, config)
    assert [f for f, _ in found] == [field], found
    assert says in found[0][1]


@pytest.mark.parametrize(
    ("email", "field"),
    [
        ({**EMAIL, "password": "hunter2-Qx9-secret"}, "notifications.email"),
        ({**EMAIL, "password_env": "hunter2 Qx9 secret"}, "notifications.email.password_env"),
    ],
)
def test_a_password_written_into_the_file_is_refused_without_being_repeated(
    tmp_path: Path, email: dict[str, Any], field: str
) -> None:
    found = problems(tmp_path, {"email": email})
    assert [f for f, _ in found] == [field]
    assert "environment variable" in found[0][1]
    assert "hunter2" not in found[0][1]


def test_the_signature_is_an_hmac_of_the_timestamp_and_the_body() -> None:
    body = webhooks.body_of({"b": 1, "a": "é"})
    assert body == '{"a":"é","b":1}'.encode()
    headers = webhooks.headers("s3cret", "s1-e2", "run.failed", body, timestamp=1700000000)
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert headers["X-Modelrunner-Signature"] == f"v1={expected}"
    assert headers["X-Modelrunner-Timestamp"] == "1700000000"
    assert (headers["X-Modelrunner-Delivery"], headers["X-Modelrunner-Event"]) == ("s1-e2", "run.failed")
    assert webhooks.signature("other", 1700000000, body) != headers["X-Modelrunner-Signature"]
    assert webhooks.new_secret() != webhooks.new_secret()


def test_retries_wait_longer_each_time_up_to_an_hour() -> None:
    retry = Retry(attempts=40, backoff_seconds=10, timeout=5)
    assert [retry.delay(n).total_seconds() for n in (1, 2, 3)] == [10, 20, 40]
    assert retry.delay(30) == dt.timedelta(hours=1)
    assert retry.lease == dt.timedelta(seconds=20)


def test_who_hears_of_what() -> None:
    assert wants(NotifyOn.ALL, RunStatus.CANCELLED, False)
    assert wants(NotifyOn.FAILURES, RunStatus.TIMED_OUT, False)
    assert not wants(NotifyOn.FAILURES, RunStatus.CANCELLED, False)
    assert not wants(NotifyOn.FAILURES, RunStatus.SUCCEEDED, True)
    assert wants(NotifyOn.RESULTS_CHANGED, RunStatus.SUCCEEDED, True)
    assert not wants(NotifyOn.RESULTS_CHANGED, RunStatus.SUCCEEDED, False)
    assert not wants(NotifyOn.RESULTS_CHANGED, RunStatus.FAILED, True)


def test_secrets_are_cut_out_of_error_messages() -> None:
    assert redacted("535 bad password pw-123 for user", ["pw-123", None, ""]) == "535 bad password *** for user"
    assert len(redacted("x" * 5000, [])) == 2000


def test_a_digest_lists_each_run_once_oldest_first() -> None:
    items = [
        {
            "event": f"run.{status}",
            "occurred_at": "2024-05-01T06:00:00+00:00",
            "run_id": number,
            "model": "seir",
            "step": None,
            "status": status,
            "error": "exit 3" if status == "failed" else None,
            "results_changed": status == "succeeded",
            "links": {"run": f"https://m.example.org/api/v1/runs/{number}"},
        }
        for number, status in ((1, "succeeded"), (2, "failed"))
    ]
    payload = messages.digest_payload(
        key="digest-u1-x", user="alice", tick_at=dt.datetime(2024, 5, 2, 6, tzinfo=dt.UTC), items=items, total=2
    )
    text = messages.digest_text(payload)
    assert messages.digest_subject(payload) == "[modelrunner] digest: 2 runs ended"
    assert text.index("run 1 of seir succeeded (results changed)") < text.index("run 2 of seir failed: exit 3")
    assert "https://m.example.org/api/v1/runs/2" in text
