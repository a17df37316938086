"""How a stored file a model wrote (an output, a partial output) is served over HTTP.

A model is untrusted code, and so is every byte it writes. A file it wrote must never become an
active page of the platform's own origin: a script in it would then act with the viewer's
session (read pages, submit forms, call the API). So:

- a download is always an attachment, as ``text/plain`` (text) or ``application/octet-stream``,
  with ``nosniff`` and a CSP ``sandbox``: opened directly, nothing in it runs;
- an HTML file shown inline (the run page frames it) is served with a strict CSP whose
  ``sandbox`` directive (no ``allow-scripts``, no ``allow-same-origin``) gives it an opaque
  origin of its own and runs none of its scripts, even when its URL is visited directly; it may
  only use its own inline styles and ``data:`` images (what a notebook's HTML report holds), and
  only this site may frame it.
"""

from __future__ import annotations

import mimetypes
import posixpath
from urllib.parse import quote

from fastapi.responses import StreamingResponse

from modelrunner.artifacts.store import ArtifactStore

_TEXT_TYPES = {"application/json", "application/xml", "application/x-yaml", "application/yaml"}
_HTML_SUFFIXES = (".html", ".htm")

DOWNLOAD_POLICY = "sandbox; default-src 'none'; frame-ancestors 'none'"
INLINE_HTML_POLICY = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'self'"
)


def is_html(path: str) -> bool:
    """Whether the file at ``path`` is shown inline as an HTML report (by its name)."""
    return path.lower().endswith(_HTML_SUFFIXES)


def download(artifacts: ArtifactStore, uri: str, path: str, size: int, sha256: str) -> StreamingResponse:
    """The stored file as an attachment that never runs as a page: text as text/plain, anything
    else as application/octet-stream."""
    guessed = mimetypes.guess_type(path)[0] or ""
    text = guessed.startswith("text/") or guessed in _TEXT_TYPES
    headers = {
        "Content-Disposition": _disposition("attachment", posixpath.basename(path)),
        "Content-Length": str(size),
        "Content-Security-Policy": DOWNLOAD_POLICY,
        "X-Content-Type-Options": "nosniff",
        "X-Sha256": sha256,
    }
    media_type = "text/plain; charset=utf-8" if text else "application/octet-stream"
    return StreamingResponse(artifacts.stream(uri), media_type=media_type, headers=headers)


def inline_html(artifacts: ArtifactStore, uri: str, path: str, size: int, sha256: str) -> StreamingResponse:
    """The stored HTML file, to be shown in a sandboxed frame (see the module's docstring)."""
    headers = {
        "Content-Disposition": _disposition("inline", posixpath.basename(path)),
        "Content-Length": str(size),
        "Content-Security-Policy": INLINE_HTML_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "private, no-store",
        "X-Sha256": sha256,
    }
    return StreamingResponse(artifacts.stream(uri), media_type="text/html; charset=utf-8", headers=headers)


def _disposition(kind: str, name: str) -> str:
    """RFC 6266: an ASCII fallback name and the exact UTF-8 one."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name) or "output"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
