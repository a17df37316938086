"""Recorded model versions, read once: a version never changes after it is recorded. The
resource classes its resources name are filled in from the workspace as it is now."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy.orm import Session

from modelrunner.errors import NotFound
from modelrunner.spec.model_spec import ModelSpec, Resources
from modelrunner.store import queries


@dataclass(frozen=True)
class RecordedVersion:
    spec: ModelSpec
    snapshot_uri: str


class VersionCatalog:
    def __init__(self, resource_classes: Callable[[], Mapping[str, Resources]] = dict) -> None:
        """``resource_classes`` gives ``resource_classes:`` of modelrunner.yaml when asked."""
        self._known: dict[tuple[str, str], RecordedVersion] = {}
        self._lock = threading.Lock()
        self._resource_classes = resource_classes

    def get(self, session: Session, name: str, version: str) -> RecordedVersion:
        """The version as recorded, with its resource classes filled in (SpecError: a class it
        names is declared no more)."""
        recorded = self._recorded(session, name, version)
        return RecordedVersion(recorded.spec.in_classes(self._resource_classes()), recorded.snapshot_uri)

    def _recorded(self, session: Session, name: str, version: str) -> RecordedVersion:
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
