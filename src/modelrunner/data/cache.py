"""The local cache of data versions: each version's files in one folder, fetched once however
many runs (threads or processes) need it."""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock

from modelrunner.artifacts.keys import UnsafeKey, resolve_under
from modelrunner.artifacts.store import ArtifactStore
from modelrunner.data.source import Source

log = logging.getLogger("modelrunner.data")


def snapshot_prefix(dataset: str, version: str) -> str:
    """Where the artifact store keeps a version whose source holds only its current state."""
    return f"datasets/{dataset}/{version}"


class DataCache:
    """``root/<dataset>/<version>/`` holds the files of that version; a version's id is a commit
    sha or a content hash, so a folder that exists is that content, complete (it appears by an
    atomic rename). Versions kept in the artifact store come from there; others from the source."""

    def __init__(self, root: Path, artifacts: ArtifactStore, source_of: Callable[[str], Source]) -> None:
        self._root = root
        self._artifacts = artifacts
        self._source_of = source_of

    def folder(self, dataset: str, version: str) -> Path:
        """The folder with the files of ``version``, fetched now if this machine lacks it. Raises
        SourceError if it cannot be fetched."""
        final = self._version_folder(dataset, version)
        if final.is_dir():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        # A lock file per version: whoever comes second waits and finds the folder complete.
        with FileLock(str(final.parent / f".{version}.lock")):
            if final.is_dir():
                return final
            partial = final.with_name(f".{version}.{uuid.uuid4().hex}.partial")
            partial.mkdir()
            try:
                prefix = snapshot_prefix(dataset, version)
                if self._artifacts.exists(prefix):
                    self._artifacts.get_folder(prefix, partial)
                else:
                    self._source_of(dataset).fetch(version, partial)
                partial.rename(final)
            finally:
                shutil.rmtree(partial, ignore_errors=True)
        log.info("dataset %s: fetched version %s into the local cache", dataset, version)
        return final

    def adopt(self, dataset: str, version: str, folder: Path) -> None:
        """Move ``folder`` (the files of ``version``, just read by a sync) into the cache, unless
        the cache has the version already."""
        final = self._version_folder(dataset, version)
        final.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(final.parent / f".{version}.lock")):
            if not final.is_dir():
                folder.rename(final)

    def drop(self, dataset: str) -> None:
        """Forget every cached version of ``dataset``."""
        shutil.rmtree(resolve_under(self._root, dataset, "dataset"), ignore_errors=True)

    def _version_folder(self, dataset: str, version: str) -> Path:
        # A version id comes from a source (a commit sha, a hash, a folder listing's digest): it
        # is checked as a request's key would be, as one folder name below the cache.
        if "/" in version:
            raise UnsafeKey(f"data version {version!r} holds a '/': a version id is one folder name", version=version)
        return Path(resolve_under(self._root, f"{dataset}/{version}", "data version"))
