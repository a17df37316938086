"""The source of a managed dataset: modelrunner itself (data/managed_writes.py records its versions)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from modelrunner.data.source import FoundVersion, KnownVersion, OnProgress, SourceError


class ManagedSource:
    """Nothing outside modelrunner changes a managed dataset, so a sync finds nothing new; its
    versions are kept in the artifact store when they are written."""

    keeps_history = False

    def __init__(self, name: str) -> None:
        self.name = name

    def discover(
        self,
        known: Callable[[str], bool],
        newest: KnownVersion | None,
        *,
        walk_all: bool,
        staging: Path,
        progress: OnProgress,
    ) -> list[FoundVersion]:
        progress(1.0, "a managed dataset changes only when files are put into it")
        return []

    def fetch(self, version: str, destination: Path) -> None:
        raise SourceError(
            f"dataset {self.name!r}: version {version} of this managed dataset is missing from the artifact store",
            dataset=self.name,
        )
