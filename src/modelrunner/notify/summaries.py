"""The model's own news: the output its ``notify.summary`` names (Markdown), read once when a
notification is created and shown in mails as HTML and plain text.

What callers can rely on:

- at most ``MAX_SUMMARY_BYTES`` of the output are read (a longer one is cut at a line and marked
  ``truncated``); a summary that cannot be read is left out, never an error of the notification;
- a model is untrusted, so its Markdown is rendered by markdown-it-py and the HTML sanitised by
  nh3 (ammonia) with a short list of tags: no scripts, styles, forms, frames or event handlers, no
  images (a mail client would fetch them from wherever the model points), links only to http(s)
  and mailto addresses, each with ``rel="noopener noreferrer nofollow"``;
- the plain text is the Markdown's text without any HTML the model wrote (a script's content
  included).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.token import Token
from sqlalchemy.orm import Session

from modelrunner.artifacts.store import ArtifactStore
from modelrunner.spec.notify_spec import ModelNotifySpec
from modelrunner.store import queries
from modelrunner.store.tables import OutputRow, RunRow

log = logging.getLogger("modelrunner.notify")

MAX_SUMMARY_BYTES = 64 * 1024  # read from the output: what one mail or webhook payload carries
MAX_DIGEST_SUMMARY_CHARS = 4000  # of each run's summary in a digest (a digest holds up to 500 runs)

_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "blockquote", "pre", "code",
    "em", "strong", "del", "s", "a", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"align"}, "td": {"align"}}
_URL_SCHEMES = {"http", "https", "mailto"}
_HIDDEN_CONTENT = re.compile(r"<\s*(/?)\s*(script|style)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Summary:
    """A run's summary as notifications carry it (``payload["summary"]``)."""

    path: str
    markdown: str
    truncated: bool

    def as_payload(self) -> dict[str, Any]:
        return {"path": self.path, "markdown": self.markdown, "truncated": self.truncated}


def model_notify_spec(session: Session, run: RunRow) -> ModelNotifySpec:
    """The ``notify:`` section of the model version the run ran (empty if it cannot be read)."""
    version = queries.get_model_version(session, run.model_name, run.model_version)
    if version is None:
        return ModelNotifySpec()
    try:
        return ModelNotifySpec.model_validate(version.spec.get("notify") or {})
    except ValueError:
        return ModelNotifySpec()


def run_summary(
    session: Session, artifacts: ArtifactStore, run: RunRow, outputs: Sequence[OutputRow]
) -> Summary | None:
    """The summary ``run`` wrote (as its model version's ``notify.summary`` names it), if any."""
    if not outputs:
        return None
    found = summary_output(run, outputs, model_notify_spec(session, run))
    return read_summary(artifacts, found) if found is not None else None


def summary_output(run: RunRow, outputs: Sequence[OutputRow], spec: ModelNotifySpec) -> OutputRow | None:
    """The output of ``run`` that ``spec.summary`` names, if it wrote one."""
    if spec.summary is None:
        return None
    for output in outputs:
        if spec.summary in output_names(run, output.path):
            return output
    return None


def output_names(run: RunRow, path: str) -> tuple[str, ...]:
    """The names ``notify:`` may give an output of ``run``: its path, and for a pipeline step's run
    also the path in the pipeline's outputs (``step/path``, ``step/item/path``)."""
    if run.step is None or run.parent_id is None:
        return (path,)
    folder = run.step if run.item_key is None else f"{run.step}/{run.item_key}"
    return (path, f"{folder}/{path}")


def read_summary(artifacts: ArtifactStore, output: OutputRow) -> Summary | None:
    """The summary's text, at most ``MAX_SUMMARY_BYTES``; None (logged) if it cannot be read."""
    try:
        with artifacts.open(output.uri) as handle:
            data = handle.read(MAX_SUMMARY_BYTES + 1)
    except Exception as exc:  # a store error of any kind: the notification goes without it
        log.warning("run %s: its summary %s cannot be read: %s", output.run_id, output.path, type(exc).__name__)
        return None
    truncated = len(data) > MAX_SUMMARY_BYTES
    text = data[:MAX_SUMMARY_BYTES].decode("utf-8", errors="replace")
    if truncated:
        text = text[: text.rfind("\n") + 1] or text
    return Summary(output.path, text.replace("\x00", ""), truncated)


def shortened(summary: dict[str, Any], limit: int = MAX_DIGEST_SUMMARY_CHARS) -> dict[str, Any]:
    """A payload's summary cut to ``limit`` characters (at a line), as a digest lists it."""
    markdown = str(summary.get("markdown", ""))
    if len(markdown) <= limit:
        return summary
    cut = markdown[:limit]
    return {**summary, "markdown": cut[: cut.rfind("\n") + 1] or cut, "truncated": True}


# --- rendering ----------------------------------------------------------------------------------


def _render_image(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    """An image as its alt text: a mail client would fetch it from wherever the model points."""
    alt = self.renderInlineAsText(tokens[idx].children or [], options, env)
    return f"[{escapeHtml(alt)}]" if alt else ""


_MARKDOWN = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
_MARKDOWN.add_render_rule("image", _render_image)


def to_html(markdown: str) -> str:
    """The Markdown as sanitised HTML (a fragment)."""
    return nh3.clean(
        _MARKDOWN.render(markdown),
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes=_URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


def to_text(markdown: str) -> str:
    """The Markdown as plain text: headings, paragraphs, lists, quotes and code kept, links followed
    by their address, HTML left out."""
    blocks: list[tuple[str, int | None]] = []  # each block and the top-level list it is an item of
    lists: list[list[int]] = []  # per open list: [next number], or [-1] for bullets
    quote = 0
    marker = ""
    list_number = 0
    for token in _MARKDOWN.parse(markdown):
        kind = token.type
        group = list_number if lists else None
        if kind in ("bullet_list_open", "ordered_list_open"):
            list_number += 0 if lists else 1
            start = token.attrGet("start")
            lists.append([-1] if kind == "bullet_list_open" else [int(start) if start is not None else 1])
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif kind == "list_item_open" and lists:
            number = lists[-1][0]
            marker = "- " if number < 0 else f"{number}. "
            if number >= 0:
                lists[-1][0] += 1
        elif kind == "blockquote_open":
            quote += 1
        elif kind == "blockquote_close":
            quote -= 1
        elif kind == "hr":
            blocks.append(("----", group))
        elif kind in ("fence", "code_block"):
            blocks.append(("\n".join("    " + line for line in token.content.rstrip("\n").split("\n")), group))
        elif kind == "inline":
            text = _inline_text(token.children or [])
            if not text.strip():
                continue
            indent = "  " * max(len(lists) - 1, 0)
            lead = indent + (marker or ("  " if lists else ""))
            marker = ""
            lines = text.split("\n")
            text = "\n".join([lead + lines[0], *(indent + "  " * bool(lists) + line for line in lines[1:])])
            if quote:
                text = "\n".join("> " * quote + line for line in text.split("\n"))
            blocks.append((text, group))
    return _join(blocks)


def _inline_text(children: Sequence[Token]) -> str:
    parts: list[str] = []
    hidden = 0  # inside an inline <script> or <style>: its content is no text
    href: str | None = None
    for child in children:
        if child.type == "html_inline":
            found = _HIDDEN_CONTENT.match(child.content)
            if found:
                hidden = max(hidden - 1, 0) if found.group(1) else hidden + 1
            continue
        if hidden:
            continue
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n")
        elif child.type == "image":
            alt = "".join(c.content for c in child.children or [])
            parts.append(f"[{alt}]" if alt else "")
        elif child.type == "link_open":
            href = str(child.attrGet("href") or "")
            parts.append("")
        elif child.type == "link_close" and href is not None:
            if href.startswith(("http://", "https://", "mailto:")) and not parts[-1].endswith(href):
                parts.append(f" ({href})")
            href = None
    return "".join(parts)


def _join(blocks: list[tuple[str, int | None]]) -> str:
    """Blocks one blank line apart, except blocks of one list."""
    lines: list[str] = []
    previous: int | None = None
    for text, group in blocks:
        if lines and (group is None or group != previous):
            lines.append("")
        lines.append(text)
        previous = group
    return "\n".join(lines).strip("\n") + "\n" if lines else ""
