"""Changing a managed dataset: each change (files put, files removed) becomes one new version,
recording who made it and their message, like a commit. A change that fails half-way records no
version; two changes of one dataset at once: the second is refused (Conflict), never mixed.

A version's files are kept whole in the artifact store (``datasets/<name>/<version>/``), as the
versions of a files dataset are, so a run reads any version as it reads theirs (data/cache.py).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from modelrunner.artifacts import regular_files
from modelrunner.artifacts.keys import clean_key, resolve_under
from modelrunner.artifacts.store import ArtifactStore
from modelrunner.auth.principal import Principal
from modelrunner.auth.write_rules import require_writable
from modelrunner.clock import utcnow
from modelrunner.data.cache import DataCache
from modelrunner.data.source import FileEntry, FoundVersion
from modelrunner.data.sync import DatasetSyncs, move_sync, record_versions
from modelrunner.data.sync_status import SyncStatus
from modelrunner.errors import AlreadyExists, Conflict, InvalidInput, ModelrunnerError
from modelrunner.spec.dataset_spec import ManagedDataset
from modelrunner.spec.workspace import Workspace
from modelrunner.store import data_queries
from modelrunner.store.database import Database
from modelrunner.store.tables import DatasetSyncRow, DatasetVersionRow

_CHUNK = 1 << 20
WRITE_REASON = "write"  # the reason of the sync row a change is recorded under
MAX_MESSAGE = 2000


class TooLarge(ModelrunnerError):
    """A file over the size limit (HTTP 413)."""


@dataclass(frozen=True)
class Put:
    """A file to put into the dataset: its path there and where to read it."""

    path: str
    source: IO[bytes]


@dataclass(frozen=True)
class Change:
    """What a change did: the version it made (None when nothing changed) and its parent."""

    version: DatasetVersionRow | None
    parent: str | None


class ManagedWrites:
    """Records changes to the managed datasets of a workspace."""

    def __init__(
        self,
        database: Database,
        workspace: Workspace,
        artifacts: ArtifactStore,
        cache: DataCache,
        syncs: DatasetSyncs,
        staging: Path,
        max_file_bytes: int,
    ) -> None:
        self._database = database
        self._workspace = workspace
        self._artifacts = artifacts
        self._cache = cache
        self._syncs = syncs
        self._staging = staging
        self._max_file_bytes = max_file_bytes

    def spec(self, dataset: str) -> ManagedDataset:
        """The dataset's spec; InvalidInput unless it is a managed one (NotFound when unknown)."""
        spec = self._workspace.dataset(dataset)
        if not isinstance(spec, ManagedDataset):
            raise InvalidInput(
                f"dataset '{dataset}' is a {spec.source} dataset: only a managed one (source: managed) takes files",
                field="dataset",
            )
        return spec

    def change(
        self,
        dataset: str,
        principal: Principal,
        *,
        put: Sequence[Put] = (),
        remove: Sequence[str] = (),
        message: str = "",
        base: str | None = None,
    ) -> Change:
        """Put and remove files in one new version made by ``principal`` with ``message``.

        Paths are relative to the dataset's root (UnsafeKey for one that could leave it); each
        must be writable by ``principal`` (Forbidden naming the rule); a file over the limit is
        TooLarge. ``base``: the version the change was made on; Conflict if the dataset has
        another newest version now (someone changed it meanwhile), as when another change of the
        dataset is under way. A change that leaves every file as it was makes no version."""
        spec = self.spec(dataset)
        paths = [clean_key(p.path, "path") for p in put] + [clean_key(p, "path") for p in remove]
        if not paths:
            raise InvalidInput("a change puts or removes at least one file", field="files")
        if len(message) > MAX_MESSAGE:
            raise InvalidInput(f"the message is longer than {MAX_MESSAGE} characters", field="message")
        require_writable(dataset, spec, principal, paths)
        row = self._begin(dataset)
        staging = self._staging / f"write-{row.id}-{uuid.uuid4().hex[:8]}"
        try:
            with self._database.read() as session:
                newest = data_queries.newest_version(session, dataset)
            parent = newest.version if newest is not None else None
            if base is not None and not (parent or "").startswith(base):
                raise Conflict(
                    f"dataset '{dataset}' changed since version {base}: its newest is {parent}; "
                    "look at the change and try again",
                    dataset=dataset,
                    newest=parent,
                )
            tree = staging / "tree"
            tree.mkdir(parents=True)
            if parent is not None:
                shutil.copytree(self._cache.folder(dataset, parent), tree, dirs_exist_ok=True)
            missing = [p for p in remove if not (tree / p).is_file()]
            if missing:
                raise InvalidInput(f"cannot remove {', '.join(missing)}: no such file in the dataset", field="remove")
            for path in remove:
                Path(resolve_under(tree, path, "path")).unlink()
            # The parent's files keep their recorded hashes: only what is put is hashed (as it is written).
            known = dict((newest.meta or {}).get("sha256") or {}) if newest is not None else {}
            digests = known if newest is None or len(known) == newest.file_count else _digests(tree)
            for path in remove:
                digests.pop(path, None)
            for item in put:
                digests[item.path] = self._write(tree, item)
            _prune_empty_folders(tree)
            digests = dict(sorted(digests.items()))
            if newest is not None and digests == (newest.meta or {}).get("sha256"):
                self._finish(row.id, [], {}, "no change")
                return Change(None, parent)
            version = hashlib.sha256(
                json.dumps({"parent": parent, "files": digests}, sort_keys=True).encode()
            ).hexdigest()
            prefix = f"datasets/{dataset}/{version}"
            self._artifacts.put_folder(tree, prefix)
            sizes = {path: (tree / path).stat().st_size for path in digests}
            found = FoundVersion(
                version,
                utcnow(),
                tuple(FileEntry(path, sizes[path]) for path in sorted(digests)),
                summary=message or f"{len(put)} file(s) put, {len(remove)} removed",
                meta={
                    "author": principal.name,
                    "message": message,
                    "parent": parent,
                    "sha256": digests,
                    "put": sorted(p.path for p in put),
                    "removed": sorted(remove),
                },
            )
            self._finish(row.id, [found], {version: self._artifacts.uri(prefix)}, f"new version {version[:12]}")
            self._cache.adopt(dataset, version, tree)
            with self._database.read() as session:
                return Change(data_queries.get_version(session, dataset, version), parent)
        except BaseException as exc:
            reason = exc.message if isinstance(exc, ModelrunnerError) else f"{type(exc).__name__}: {exc}"
            with self._database.write() as session:
                move_sync(
                    session, row.id, SyncStatus.FAILED, error=f"change refused: {reason}"[:2000], finished_at=utcnow()
                )
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _begin(self, dataset: str) -> DatasetSyncRow:
        """The change's row, running from the start (a poller never sees it queued); Conflict
        while another change or a sync of the dataset is queued or running (one at a time: the
        store's unique index on a dataset's active sync decides, on SQLite and PostgreSQL)."""
        busy = Conflict(f"dataset '{dataset}' is being changed or synced right now; try again", dataset=dataset)
        with self._database.write() as session:
            if data_queries.active_sync(session, dataset) is not None:
                raise busy
            now = utcnow()
            row = DatasetSyncRow(
                dataset=dataset,
                status=SyncStatus.RUNNING.value,
                walk_all=False,
                reason=WRITE_REASON,
                runner_id=self._syncs.runner_id,
                created_at=now,
                started_at=now,
            )
            try:
                with session.begin_nested():
                    data_queries.add_sync(session, row)
            except AlreadyExists as exc:  # a concurrent change (PostgreSQL)
                raise busy from exc
            return row

    def _write(self, tree: Path, item: Put) -> str:
        """Write ``item`` below ``tree``; its content's sha256."""
        target = Path(resolve_under(tree, item.path, "path"))
        if target.is_dir():
            raise InvalidInput(f"{item.path!r} is a folder of the dataset; put files into it", field="files")
        blocking = next((p for p in target.parents if p.is_file() and p.is_relative_to(tree)), None)
        if blocking is not None:
            shown = blocking.relative_to(tree).as_posix()
            raise InvalidInput(f"cannot put {item.path!r}: {shown!r} is a file of the dataset", field="files")
        target.parent.mkdir(parents=True, exist_ok=True)
        size = 0
        digest = hashlib.sha256()
        with target.open("wb") as handle:
            while chunk := item.source.read(_CHUNK):
                size += len(chunk)
                if size > self._max_file_bytes:
                    raise TooLarge(
                        f"file {item.path!r} is larger than this server takes: at most {self._max_file_bytes} "
                        "bytes (max_upload_bytes, MODELRUNNER_MAX_UPLOAD_BYTES)",
                        path=item.path,
                    )
                digest.update(chunk)
                handle.write(chunk)
        return digest.hexdigest()

    def _finish(self, sync_id: int, found: list[FoundVersion], snapshots: dict[str, str], said: str) -> None:
        with self._database.write() as session:
            sync = data_queries.get_sync(session, sync_id)
            assert sync is not None
            finished = move_sync(
                session,
                sync_id,
                SyncStatus.SUCCEEDED,
                added=len(found),
                finished_at=utcnow(),
                progress_fraction=1.0,
                progress_message=said,
            )
            if not finished:
                raise Conflict("the change was stopped before it was recorded (the server is stopping); try again")
            if found:
                record_versions(session, sync, found, snapshots)


def _digests(tree: Path) -> dict[str, str]:
    """Each regular file's sha256 by its path below ``tree``."""
    found = {}
    for file in regular_files.scan(tree).files:
        digest = hashlib.sha256()
        with file.path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        found[file.relative] = digest.hexdigest()
    return dict(sorted(found.items()))


def _prune_empty_folders(tree: Path) -> None:
    for folder in sorted((p for p in tree.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
