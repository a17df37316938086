"""The contract every dataset source implements, and what a sync finds in one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from modelrunner.errors import ModelrunnerError

# Called as work advances: a fraction (None while the total is unknown) and a short message.
OnProgress = Callable[[float | None, str], None]


class SourceError(ModelrunnerError):
    """A source that cannot be read (repository unreachable, bucket missing, HTTP 404...). The
    message names the dataset's source and what failed, never a credential."""


def public_url(url: str) -> str:
    """``url`` as messages and API responses may show it: the user info (a password, or a token
    given as the user) becomes ``***`` and the query string is left out. Paths pass unchanged."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"***@{host}" if "@" in parts.netloc else host, parts.path, "", ""))


@dataclass(frozen=True)
class FileEntry:
    """One file of a data version: its path relative to the version's root, and its size."""

    path: str
    size: int


@dataclass(frozen=True)
class KnownVersion:
    """A version already recorded for the dataset, as a source needs to know it."""

    version: str
    meta: dict[str, Any]


@dataclass(frozen=True)
class FoundVersion:
    """A version a sync found.

    ``version`` identifies it (a commit sha, a hex content hash); ``time`` is when the data took
    this state (commit time, Last-Modified, or when it was seen); ``meta`` is what the source
    wants back in ``KnownVersion`` (an ETag for a conditional request).
    """

    version: str
    time: dt.datetime
    files: tuple[FileEntry, ...]
    summary: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


class Source(Protocol):
    """A place data versions come from.

    ``keeps_history``: True when any recorded version can be fetched again from the source (a
    git commit). False when the source only ever holds its current state (a folder, a bucket
    prefix, a URL); then ``discover`` writes the new version's files to ``staging`` and the sync
    keeps them in the artifact store, so that the version stays reproducible.
    """

    keeps_history: bool

    def discover(
        self,
        known: Callable[[str], bool],
        newest: KnownVersion | None,
        *,
        walk_all: bool,
        staging: Path,
        progress: OnProgress,
    ) -> list[FoundVersion]:
        """The versions not yet known, newest first.

        Without ``walk_all`` it stops at the first version ``known`` says is recorded; with it,
        it walks the whole history and leaves out only the known ones. A source without history
        returns at most its current state, written to ``staging / version`` (an empty folder the
        caller removes). Raises SourceError when the source cannot be read; nothing is recorded then.
        """
        ...

    def fetch(self, version: str, destination: Path) -> None:
        """Write the files of ``version`` into the empty folder ``destination`` (sources that keep
        history only). Raises SourceError if the version cannot be fetched."""
        ...
