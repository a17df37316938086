"""Why a run (or each step of a pipeline run) was or was not answered from the cache.

A cache hit names the run whose result answered it. A computed run is compared, part by part,
with the closest earlier run that computed the same model's same step and item (the one whose
key differs in the fewest parts, the newest among equals): its version (for a step with
``files:``, its spec and each file it uses), parameters, input data versions, fan-out item,
upstream outputs and profile. A step asked to be computed again (``rerun --from``/``--only``,
``cache=refresh``) says so.
"""

from __future__ import annotations

import logging
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from modelrunner.auth.run_access import RunPermission, permitted_run
from modelrunner.spec.model_version import snapshot_digests
from modelrunner.store import explain_queries, queries
from modelrunner.store.tables import RunKind, RunRow

if TYPE_CHECKING:
    from modelrunner.platform import Platform

_log = logging.getLogger("modelrunner.engine")


@dataclass(frozen=True)
class Difference:
    """One part of the key that differs: ``part`` is version, step spec, file, param, input,
    item, upstream output or profile; ``name`` says which (a file's path, a parameter's name)."""

    part: str
    name: str | None = None
    before: Any = None
    after: Any = None

    def as_json(self) -> dict[str, Any]:
        return {"part": self.part, "name": self.name, "before": self.before, "after": self.after}

    def __str__(self) -> str:
        what = f"{self.part} {self.name}" if self.name is not None else self.part
        if self.before is None:
            return f"{what} is new"
        if self.after is None:
            return f"{what} is gone"
        return f"{what} changed ({_short(self.before)} -> {_short(self.after)})"


@dataclass(frozen=True)
class Explanation:
    """Why one run was a cache hit or was computed."""

    run_id: int
    step: str | None
    item_key: str | None
    outcome: str  # cache_hit | computed | recompute_asked | first | waiting
    reason: str
    source_run_id: int | None = None  # a cache hit's source
    compared_with: int | None = None  # the closest earlier run of the same step and item
    differences: list[Difference] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "step": self.step,
            "item_key": self.item_key,
            "outcome": self.outcome,
            "reason": self.reason,
            "source_run": self.source_run_id,
            "compared_with": self.compared_with,
            "differences": [d.as_json() for d in self.differences],
        }


def explain_run(
    platform: Platform, permission: RunPermission, *, by_file: bool = True
) -> tuple[RunRow, list[Explanation]]:
    """The run (once the caller may view it) and why it, or each step run of a pipeline run,
    was or was not a cache hit. ``by_file`` false leaves out the files that differ between two
    whole-folder versions (it reads their snapshots)."""
    with platform.database.read() as session:
        run = permitted_run(session, permission, "viewing a run")
        files_of = _SnapshotFiles(platform, session, run.model_name) if by_file else None
        if run.kind != RunKind.PIPELINE or run.cache_hit:  # a pipeline's hit has no step runs of its own
            return run, [explain_one(session, run, files_of=files_of)]
        children = queries.children_of(session, run.id)
        rows = explain_queries.runs_by_id(session, {child.id for child in children})
        return run, [explain_one(session, rows[child.id], parent=run, files_of=files_of) for child in children]


def explain_one(
    session: Session,
    run: RunRow,
    parent: RunRow | None = None,
    files_of: Callable[[str], dict[str, str] | None] | None = None,
) -> Explanation:
    """Why ``run`` (a pipeline's step run: ``parent`` is its pipeline run, read when None) was a
    cache hit or was computed. ``files_of`` gives a model version's files with their digests
    (None when its snapshot is gone), so a changed version that covers the whole folder is
    told file by file."""
    if run.cache_hit:
        return Explanation(
            run.id,
            run.step,
            run.item_key,
            "cache_hit",
            f"answered by run {run.source_run_id}: every part of the key is the same",
            source_run_id=run.source_run_id,
        )
    if parent is None and run.parent_id is not None:
        parent = queries.get_run(session, run.parent_id)
    if parent is not None and parent.plan is not None and run.step in parent.plan.get("refresh", []):
        return Explanation(
            run.id, run.step, run.item_key, "recompute_asked", "computed again as asked (rerun --from/--only, refresh)"
        )
    earlier = explain_queries.earlier_computed(session, run)
    parents = explain_queries.runs_by_id(session, {row.parent_id for row in earlier if row.parent_id is not None})
    mine = key_parts(run, parent)
    best: tuple[RunRow, list[Difference]] | None = None
    for other in earlier:  # newest first: the first with the fewest differences wins
        found = differences(key_parts(other, parents.get(other.parent_id or 0)), mine)
        if best is None or len(found) < len(best[1]):
            best = (other, found)
    if best is None:
        return Explanation(run.id, run.step, run.item_key, "first", "computed: no earlier run of this step and item")
    other, found = best
    if files_of is not None and any(d.part == "version" for d in found):
        before, after = files_of(other.model_version), files_of(run.model_version)
        if before is not None and after is not None:
            found += _by_name("file", before, after)
    if not found:
        why = f"run {other.id} has the same key but had not succeeded when this run was created ({other.status} now)"
        if run.origin and run.origin.startswith("rerun:"):
            why = f"computed again as asked (a rerun); run {other.id} has the same key"
        return Explanation(run.id, run.step, run.item_key, "computed", why, compared_with=other.id)
    shown = "; ".join(str(d) for d in found[:5]) + (f"; and {len(found) - 5} more" if len(found) > 5 else "")
    return Explanation(
        run.id,
        run.step,
        run.item_key,
        "computed",
        f"computed: its key differs from run {other.id}'s in: {shown}",
        compared_with=other.id,
        differences=found,
    )


def key_parts(run: RunRow, parent: RunRow | None) -> dict[str, Any]:
    """The parts of ``run``'s cache key as recorded (None for a part an older run did not record)."""
    version: dict[str, Any] = {"version": run.model_version}
    if parent is not None and parent.plan is not None and run.step in parent.plan.get("versions", {}):
        version = parent.plan["versions"][run.step]
    plan = run.plan or {}
    return {
        "version": version.get("version"),
        "spec": version.get("spec"),
        "files": version.get("files"),
        "params": run.params or {},
        "inputs": {name: chosen.get("version") for name, chosen in (run.inputs or {}).items()},
        "item": run.item,
        "upstream": plan.get("upstream_key"),
        "profile": plan.get("profile"),
    }


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[Difference]:
    """The parts that differ between two runs' keys, file by file and parameter by parameter."""
    found: list[Difference] = []
    if before["version"] != after["version"]:
        if before["files"] is not None and after["files"] is not None:
            if before["spec"] != after["spec"]:
                found.append(Difference("step spec", None, before["spec"], after["spec"]))
            found += _by_name("file", before["files"], after["files"])
        else:
            # A step that uses the whole folder (no `files:`) on one side: its version is the model's.
            found.append(Difference("version", "(the whole model folder)", before["version"], after["version"]))
    found += _by_name("param", before["params"], after["params"])
    found += _by_name("input", before["inputs"], after["inputs"])
    if before["item"] != after["item"]:
        found.append(Difference("item", None, before["item"], after["item"]))
    if before["upstream"] is not None and after["upstream"] is not None:
        found += _by_name("upstream output", _flat(before["upstream"]), _flat(after["upstream"]))
    if before["profile"] != after["profile"]:
        names = (_profile_name(before["profile"]), _profile_name(after["profile"]))
        found.append(Difference("profile", "settings" if names[0] == names[1] else None, *names))
    return found


def _by_name(part: str, before: dict[str, Any], after: dict[str, Any]) -> list[Difference]:
    return [
        Difference(part, name, before.get(name), after.get(name))
        for name in sorted(before.keys() | after.keys())
        if before.get(name) != after.get(name)
    ]


def _flat(upstream: dict[str, dict[str, str]]) -> dict[str, str]:
    return {f"{folder}/{path}": digest for folder, files in upstream.items() for path, digest in files.items()}


def _profile_name(profile: dict[str, Any] | None) -> str:
    return "(none)" if profile is None else str(profile.get("name", profile))


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _SnapshotFiles:
    """A model's versions' files with their digests, read from their snapshots once per explanation."""

    def __init__(self, platform: Platform, session: Session, model: str) -> None:
        self._platform = platform
        self._session = session
        self._model = model
        self._known: dict[str, dict[str, str] | None] = {}

    def __call__(self, version: str) -> dict[str, str] | None:
        if version not in self._known:
            self._known[version] = self._read(version)
        return self._known[version]

    def _read(self, version: str) -> dict[str, str] | None:
        row = queries.get_model_version(self._session, self._model, version)
        if row is None:
            return None
        try:
            return snapshot_digests(self._platform.artifacts.get_bytes(row.snapshot_uri))
        except (OSError, tarfile.TarError) as exc:  # a snapshot removed or unreadable: say the version only
            _log.warning("model %s version %s: its snapshot cannot be read: %s", self._model, version, exc)
            return None
