"""Recorded model versions, read once: a version never changes after it is recorded."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy.orm import Session

from modelrunner.errors import NotFound
from modelrunner.spec.model_spec import ModelSpec
from modelrunner.store import queries


@dataclass(frozen=True)
class RecordedVersion:
    spec: ModelSpec
    snapshot_uri: str


class VersionCatalog:
    def __init__(self) -> None:
        self._known: dict[tuple[str, str], RecordedVersion] = {}
        self._lock = threading.Lock()

    def get(self, session: Session, name: str, version: str) -> RecordedVersion:
        with self._lock:
            found = self._known.get((name, version))
        if found is None:
            row = queries.get_model_version(session, name, version)
            if row is None:
                raise NotFound(f"model '{name}' has no recorded version {version}")
            found = RecordedVersion(ModelSpec.model_validate(row.spec), row.snapshot_uri)
            with self._lock:
                self._known[(name, version)] = found
        return found
