"""``modelrunner subscriptions`` and ``modelrunner deliveries`` as a user meets them: the real CLI
as a subprocess, signed in with MODELRUNNER_TOKEN, against a real ``modelrunner serve`` that mails
a real SMTP server and posts to a real webhook receiver."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelrunner.store.database import Database
from tests.acceptance.test_cli import cli, ok
from tests.conftest import TESTS, Server
from tests.identities import add_user
from tests.integration.runs_api import wait_until, write_model
from tests.integration.test_model_news import QUERIES, QUERIES_PY
from tests.notify_services import SmtpServer, WebhookReceiver, configure, email_settings


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hooks = WebhookReceiver()
    hooks.start()
    yield hooks
    hooks.stop()


@pytest.fixture
def workspace(tmp_path: Path, smtp: SmtpServer) -> Path:
    """The test workspace, mailing through the test SMTP server (no digest schedule)."""
    root = tmp_path / "workspace"
    shutil.copytree(TESTS / "workspace", root, ignore=shutil.ignore_patterns("__pycache__", "broken"))
    configure(root, {"email": email_settings(smtp), "webhooks": {"attempts": 3, "backoff_seconds": 0.2}})
    return root


def signed_in(server: Server, name: str) -> dict[str, str]:
    """The environment of a CLI signed in as a new user ``name`` of group analysts."""
    database = Database(server.env["MODELRUNNER_DATABASE_URL"])
    try:
        token = add_user(database, name, email=f"{name}@example.org", groups=["analysts"])
    finally:
        database.dispose()
    return {**server.env, "MODELRUNNER_TOKEN": token}


def test_subscribing_listing_deliveries_and_removing_from_the_command_line(
    server: Server, smtp: SmtpServer, receiver: WebhookReceiver
) -> None:
    alice, bob = signed_in(server, "alice"), signed_in(server, "bob")

    by_mail = ok("subscriptions", "add", "--model", "noop", "--email", env=alice)
    assert by_mail.strip() == "subscription 1: e-mail to alice@example.org when a run of noop ends"
    hooked = ok(
        "subscriptions", "add", "--model", "noop", "--on", "results-changed", "--webhook", receiver.url, env=alice
    )
    assert "when a run of noop brings changed results" in hooked
    secret = re.search(r"webhook secret: (\S+)", hooked)
    assert secret, hooked
    receiver.secret = secret.group(1)
    no_digest = cli("subscriptions", "add", "--model", "noop", "--digest", env=alice)
    assert no_digest.returncode == 1 and "notifications.digest" in no_digest.stderr
    neither = cli("subscriptions", "add", "--model", "noop", env=alice)
    assert neither.returncode == 1 and "give one of --email, --webhook URL or --digest" in neither.stderr

    listed = ok("subscriptions", "list", env=alice)
    assert "model noop" in listed and "alice@example.org" in listed and receiver.url in listed
    assert receiver.secret not in listed

    run = json.loads(ok("run", "noop", "-p", "n=4", "--wait", "--json", env=server.env))
    wait_until(lambda: smtp.mailbox.to("alice@example.org"), 20, "the mail")
    wait_until(lambda: [r for r in receiver.requests() if r.verified and r.answered == 200], 20, "the webhook")
    wait_until(
        lambda: all(d["status"] == "delivered" for d in json.loads(ok("deliveries", "list", "--json", env=alice))),
        20,
        "both deliveries recorded",
    )

    table = ok("deliveries", "list", env=alice)
    assert table.count("delivered") == 2 and "run.succeeded" in table and str(run["id"]) in table
    [mailed] = json.loads(ok("deliveries", "list", "--subscription", "1", "--json", env=alice))
    shown = ok("deliveries", "show", str(mailed["id"]), env=alice)
    assert mailed["key"] in shown and "alice@example.org" in shown and "ok" in shown
    assert "no deliveries yet" in cli("deliveries", "list", "--status", "failed", env=alice).stderr

    others = cli("subscriptions", "remove", "1", env=bob)
    assert others.returncode == 1 and "unknown subscription 1" in others.stderr
    assert "removed subscription 1" in ok("subscriptions", "remove", "1", env=alice)
    remaining = ok("subscriptions", "list", "--json", env=alice)
    assert [s["channel"] for s in json.loads(remaining)] == ["webhook"] and receiver.secret not in remaining


def test_subscribing_to_a_step_an_output_and_a_parameter_from_the_command_line(
    server: Server, smtp: SmtpServer
) -> None:
    workspace = Path(server.env["MODELRUNNER_WORKSPACE"])
    write_model(workspace, "queries", QUERIES, {"queries.py": QUERIES_PY})
    configure(workspace, {"email": email_settings(smtp)}, groups={"analysts": ["noop", "queries"]})
    alice = signed_in(server, "alice")

    step = ok("subscriptions", "add", "--model", "queries", "--step", "answer_queries", "--email", env=alice)
    assert (
        step.strip() == "subscription 1: e-mail to alice@example.org when a run of step answer_queries of queries ends"
    )
    narrowed = ok(
        "subscriptions", "add", "--model", "noop", "--param", "n=4", "--output", "params.json", "--email", env=alice
    )
    assert (
        narrowed.strip()
        == "subscription 2: e-mail to alice@example.org when a run of noop with n=4 changes params.json"
    )
    unknown = cli("subscriptions", "add", "--model", "queries", "--step", "answers", "--email", env=alice)
    assert unknown.returncode == 1
    assert "model 'queries' has no step 'answers' (its steps: fetch, answer_queries)" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
    malformed = cli("subscriptions", "add", "--model", "noop", "--param", "n", "--email", env=alice)
    assert malformed.returncode == 1 and "'n' is not name=value" in malformed.stderr

    listed = ok("subscriptions", "list", env=alice)
    assert "model queries, step answer_queries" in listed and "model noop, output params.json, n=4" in listed
    assert [s["params"] for s in json.loads(ok("subscriptions", "list", "--json", env=alice))] == [None, {"n": 4}]

    ok("run", "queries", "--wait", env=server.env)
    ok("run", "noop", "-p", "n=5", "--wait", env=server.env)  # not n=4: nothing for subscription 2
    ok("run", "noop", "-p", "n=4", "--wait", env=server.env)
    mails = wait_until(
        lambda: len(smtp.mailbox.to("alice@example.org")) == 2 and smtp.mailbox.to("alice@example.org"), 30, "two mails"
    )
    subjects = [str(mail["Subject"]) for mail in mails]
    assert sum("of queries step answer_queries succeeded" in s for s in subjects) == 1
    assert sum("of noop succeeded" in s for s in subjects) == 1
