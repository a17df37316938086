"""Versions of one file behind an HTTP(S) URL, identified by the file's content.

The server's ETag and Last-Modified are kept in the version's meta and sent back as conditional
request headers, so an unchanged file costs a 304 rather than a download.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import uuid
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import httpx

from modelrunner.clock import utcnow
from modelrunner.data.source import FileEntry, FoundVersion, KnownVersion, OnProgress, SourceError, public_url

_CHUNK = 1 << 20
# What the next request sends back: meta key -> response header.
_VALIDATORS = {"etag": "etag", "last_modified": "last-modified"}


class HttpSource:
    """The file at ``url``; a version is the sha256 hex of its body, whatever the server's headers.

    A discover sends ``If-None-Match``/``If-Modified-Since`` from ``newest.meta`` and finds nothing
    on a 304. Otherwise the body is streamed to ``staging / version / <file name>``, the name being
    the last segment of the URL path (``data`` when there is none). Messages show the URL without
    its query string or user info, which may hold tokens.
    """

    keeps_history = False

    def __init__(self, name: str, url: str, *, timeout: float = 60.0) -> None:
        self.name = name
        self.url = url
        self.timeout = timeout
        self._shown_url = public_url(url)
        self._file_name = _file_name(urlsplit(url).path)

    def discover(
        self,
        known: Callable[[str], bool],
        newest: KnownVersion | None,
        *,
        walk_all: bool,
        staging: Path,
        progress: OnProgress,
    ) -> list[FoundVersion]:
        """The file's current content when it is not known yet; [] on a 304 or a known body.

        Raises SourceError on any status other than 2xx or 304, a connection error or a timeout.
        """
        progress(None, f"requesting {self._shown_url}")
        staging.mkdir(parents=True, exist_ok=True)
        partial = staging / f".download-{uuid.uuid4().hex}"
        try:
            downloaded = self._download(_conditional_headers(newest), partial, progress)
            if downloaded is None:
                progress(1.0, f"{self._shown_url} not modified")
                return []
            version, size, headers = downloaded
            if known(version):
                progress(1.0, f"no change in {self._shown_url}")
                return []
            target = staging / version / self._file_name
            target.parent.mkdir(parents=True, exist_ok=True)
            partial.rename(target)
        finally:
            partial.unlink(missing_ok=True)
        progress(1.0, f"new version of {self._shown_url}: {size} bytes")
        meta = {key: headers[header] for key, header in _VALIDATORS.items() if headers.get(header)}
        when = _parse_http_date(headers.get("last-modified")) or utcnow()
        return [FoundVersion(version, when, (FileEntry(self._file_name, size),), summary=f"{size} bytes", meta=meta)]

    def fetch(self, version: str, destination: Path) -> None:
        """Always raises SourceError: the URL serves only its current content, and the versions
        found are kept by the caller."""
        raise self._error("an http dataset keeps no history; its versions are read from the artifact store")

    def _download(
        self, headers: dict[str, str], partial: Path, progress: OnProgress
    ) -> tuple[str, int, httpx.Headers] | None:
        """GET the URL, streaming a body into ``partial``: None on a 304, else the body's sha256
        hex, its size and the response headers."""
        try:
            with (
                httpx.Client(timeout=self.timeout, follow_redirects=True) as client,
                client.stream("GET", self.url, headers=headers) as response,
            ):
                if response.status_code == httpx.codes.NOT_MODIFIED:
                    return None
                if not response.is_success:
                    status = f"HTTP {response.status_code} {response.reason_phrase}".strip()
                    raise self._error(f"{self._shown_url} answered {status}")
                digest = hashlib.sha256()
                expected = int(response.headers.get("content-length") or 0)
                size = 0
                with partial.open("wb") as output:
                    for chunk in response.iter_bytes(_CHUNK):
                        digest.update(chunk)
                        output.write(chunk)
                        size += len(chunk)
                        progress(min(size / expected, 1.0) if expected else None, f"downloaded {size} bytes")
                return digest.hexdigest(), size, response.headers
        except httpx.TimeoutException as exc:
            raise self._error(f"{self._shown_url} gave no answer within {self.timeout:g} s") from exc
        except httpx.HTTPError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no details"
            # Some httpx messages quote the URL, query string (and any token in it) included.
            reason = reason.replace(self.url, self._shown_url)
            raise self._error(f"cannot read {self._shown_url}: {type(exc).__name__}: {reason}") from exc

    def _error(self, message: str) -> SourceError:
        return SourceError(f"dataset {self.name!r}: {message}", dataset=self.name)


def _conditional_headers(newest: KnownVersion | None) -> dict[str, str]:
    if newest is None:
        return {}
    headers = {}
    if etag := newest.meta.get("etag"):
        headers["If-None-Match"] = str(etag)
    if last_modified := newest.meta.get("last_modified"):
        headers["If-Modified-Since"] = str(last_modified)
    return headers


def _parse_http_date(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _file_name(url_path: str) -> str:
    name = PurePosixPath(unquote(url_path)).name
    return name if name not in ("", ".", "..") else "data"
