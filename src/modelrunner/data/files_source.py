"""Versions of the files under an fsspec URL: a local folder, ``file://``, ``s3://bucket/prefix``...

Such a place keeps no history, so a version is a hash of what is there now, and discovering a new
version copies its files to the staging folder for the caller to keep.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs

from modelrunner.clock import utcnow
from modelrunner.data.source import FileEntry, FoundVersion, KnownVersion, OnProgress, SourceError, public_url
from modelrunner.extras import missing_extra

_CHUNK = 1 << 20
_LOCAL_PROTOCOLS = {"file", "local"}


@dataclass(frozen=True)
class _Listed:
    """A file as listed: where it is, its path relative to the dataset's root, size and identity tag."""

    location: str
    path: str
    size: int
    tag: str


class FilesSource:
    """Every file under ``url``; a version is the sha256 of the sorted listing.

    The listing hashed is (relative path, size, ETag) for each file, or the file's content sha256
    in place of the ETag where the filesystem gives none (local files), so a version changes exactly
    when a file is added, removed or changed. ``options`` are fsspec storage options (for instance
    ``{"endpoint_url": ...}`` for an S3-compatible store); their values never appear in a message.
    """

    keeps_history = False

    def __init__(self, name: str, url: str, options: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.url = url
        self.options = dict(options or {})
        self._shown_url = public_url(url)

    def discover(
        self,
        known: Callable[[str], bool],
        newest: KnownVersion | None,
        *,
        walk_all: bool,
        staging: Path,
        progress: OnProgress,
    ) -> list[FoundVersion]:
        """The current state when it is not known yet, its files copied to ``staging / version``.

        Raises SourceError when the place is missing or empty, or when its content changed while
        it was being copied (the copy would then match no single version).
        """
        progress(None, f"listing {self._shown_url}")
        fs, root = self._open()
        listing = self._list(fs, root)
        version = _version_of(listing)
        if known(version):
            progress(1.0, f"no change in {self._shown_url}")
            return []
        total = sum(item.size for item in listing) or 1
        copied = 0
        for number, item in enumerate(listing, start=1):
            progress(copied / total, f"copying file {number} of {len(listing)}: {item.path}")
            target = staging / version / item.path
            target.parent.mkdir(parents=True, exist_ok=True)
            with self._translated(f"cannot copy {item.path} from {self._shown_url}"):
                fs.get_file(item.location, str(target))
            copied += item.size
        if _version_of(self._list(fs, root)) != version:
            raise self._error(f"{self._shown_url} changed while it was being read; try again")
        files = tuple(FileEntry(item.path, item.size) for item in listing)
        progress(1.0, f"new version of {self._shown_url}: {len(files)} file(s)")
        summary = f"{len(files)} file(s), {sum(item.size for item in listing)} bytes"
        return [FoundVersion(version, utcnow(), files, summary=summary)]

    def fetch(self, version: str, destination: Path) -> None:
        """Always raises SourceError: the place holds only its current state, and the versions
        found are kept by the caller."""
        raise self._error("a files dataset keeps no history; its versions are read from the artifact store")

    def _open(self) -> tuple[AbstractFileSystem, str]:
        with self._translated(f"cannot open {self._shown_url}"):
            fs, root = url_to_fs(self.url, **self.options)
        return fs, root.rstrip("/")

    def _list(self, fs: AbstractFileSystem, root: str) -> list[_Listed]:
        """Every file under ``root``, sorted by relative path; raises SourceError when there is none."""
        # Filesystems such as s3fs cache listings; a poll must see the place as it is now.
        fs.invalidate_cache()
        with self._translated(f"cannot list {self._shown_url}"):
            try:
                found: dict[str, dict[str, Any]] = fs.find(root, detail=True)
            except FileNotFoundError:
                found = {}
            if not found:
                raise self._error(self._why_empty(fs, root))
            listing = []
            for location, info in found.items():
                if info.get("type", "file") != "file" or location.endswith("/"):
                    continue  # directory markers of object stores
                path = self._relative(root, location)
                tag = info.get("ETag") or info.get("etag") or _content_sha256(fs, location)
                listing.append(_Listed(location, path, int(info.get("size") or 0), str(tag)))
        if not listing:
            raise self._error(f"no files under {self._shown_url}")
        return sorted(listing, key=lambda item: item.path)

    def _why_empty(self, fs: AbstractFileSystem, root: str) -> str:
        protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
        if protocols & _LOCAL_PROTOCOLS:
            return f"no files under {self._shown_url}" if fs.isdir(root) else f"folder {self._shown_url} missing"
        bucket = root.split("/", 1)[0]
        if not fs.exists(bucket):
            return f"bucket {bucket!r} missing (or not readable with the credentials given) for {self._shown_url}"
        return f"no files under {self._shown_url}"

    def _relative(self, root: str, location: str) -> str:
        # The URL may name a single file rather than a folder.
        path = PurePosixPath(location).name if location == root else location.removeprefix(f"{root}/")
        parts = path.split("/")
        # Object keys may hold anything; none of them may write outside the staging folder.
        if not path or any(part in ("", ".", "..") for part in parts):
            raise self._error(f"cannot copy {location!r}: its name is not a safe relative file path")
        return path

    @contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        """Turn any error of the filesystem driver into SourceError, keeping option values out of it."""
        try:
            yield
        except SourceError:
            raise
        except Exception as exc:  # drivers raise their own assorted types (botocore, aiohttp, OSError...)
            missing = missing_extra(exc)
            if missing is not None:
                raise self._error(f"{action}: {missing.message}") from exc
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            for value in self.options.values():
                if isinstance(value, str) and len(value) >= 4:
                    reason = reason.replace(value, "***")
            raise self._error(f"{action}: {type(exc).__name__}{': ' + reason if reason else ''}") from exc

    def _error(self, message: str) -> SourceError:
        return SourceError(f"dataset {self.name!r}: {message}", dataset=self.name)


def _version_of(listing: list[_Listed]) -> str:
    canonical = json.dumps([[item.path, item.size, item.tag] for item in listing], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _content_sha256(fs: AbstractFileSystem, location: str) -> str:
    digest = hashlib.sha256()
    with fs.open(location, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
