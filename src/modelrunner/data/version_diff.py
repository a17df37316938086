"""What changed between two versions of a dataset: files added, removed and changed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelrunner.store.tables import DatasetVersionRow


@dataclass(frozen=True)
class VersionDiff:
    """Paths sorted; a file is changed when its content hash differs (a managed dataset records
    one per file) or, where a version records none, its size."""

    old: str
    new: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"from": self.old, "to": self.new, "added": self.added, "removed": self.removed, "changed": self.changed}


def diff(old: DatasetVersionRow, new: DatasetVersionRow) -> VersionDiff:
    before, after = _identities(old), _identities(new)
    return VersionDiff(
        old.version,
        new.version,
        added=sorted(after.keys() - before.keys()),
        removed=sorted(before.keys() - after.keys()),
        changed=sorted(p for p in before.keys() & after.keys() if before[p] != after[p]),
    )


def _identities(row: DatasetVersionRow) -> dict[str, str]:
    digests = (row.meta or {}).get("sha256") or {}
    return {f["path"]: str(digests.get(f["path"]) or f["size"]) for f in row.files}


def folders(row: DatasetVersionRow) -> list[str]:
    """The top-level folders of a version (one per scenario, in a scenarios dataset)."""
    return sorted({f["path"].split("/", 1)[0] for f in row.files if "/" in f["path"]})
