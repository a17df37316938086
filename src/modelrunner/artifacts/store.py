"""The artifact store: model snapshots and run outputs under one fsspec URL."""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from fsspec.core import url_to_fs

from modelrunner.artifacts import regular_files
from modelrunner.artifacts.keys import UnsafeKey, clean_key, resolve_under

log = logging.getLogger("modelrunner.artifacts")

_CHUNK = 1 << 20


@dataclass(frozen=True)
class StoredFile:
    """One file in the store: its path relative to the outputs folder, size, sha256 and URI."""

    path: str
    size: int
    sha256: str
    uri: str

    def as_row(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "uri": self.uri}


class ArtifactStore:
    """Keys are ``/``-separated paths below the store's root URL (a local folder by default).
    Every key and URI is confined to the root (``artifacts/keys.py``): one that could leave it
    raises UnsafeKey, whoever handed it in."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.fs, root = url_to_fs(self.url)
        self.root = root.rstrip("/")
        self._local = self.fs.protocol in ("file", "local") or "file" in self.fs.protocol
        if self._local:
            Path(self.root).mkdir(parents=True, exist_ok=True)

    @property
    def is_local(self) -> bool:
        """Whether the store is a folder of this machine (``root``), not an object store."""
        return self._local

    def uri(self, key: str) -> str:
        return f"{self.url}/{clean_key(key)}"

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._path(key)))

    def put_bytes(self, key: str, data: bytes) -> str:
        """Store ``data`` at ``key``; a reader never sees it part-written, even while another
        writer stores the same key again (submits of a new model version that arrive together)."""
        path = self._path(key)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        if self._local:
            # Writing in place would truncate what readers may be reading: write aside, then rename.
            partial = f"{path}.{uuid.uuid4().hex}.partial"
            self.fs.pipe_file(partial, data)
            os.replace(partial, path)
        else:
            self.fs.pipe_file(path, data)  # an object store publishes an object whole
        return self.uri(key)

    def put_stream(self, key: str, source: IO[bytes]) -> str:
        """Store what ``source`` reads at ``key``, in chunks (a restore's files, of any size)."""
        path = self._path(key)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with self.fs.open(path, "wb") as target:
            while chunk := source.read(_CHUNK):
                target.write(chunk)
        return self.uri(key)

    def get_bytes(self, uri: str) -> bytes:
        data: bytes = self.fs.cat_file(self._path_of_uri(uri))
        return data

    def open(self, uri: str) -> IO[bytes]:
        handle: IO[bytes] = self.fs.open(self._path_of_uri(uri), "rb")
        return handle

    def stream(self, uri: str) -> Iterator[bytes]:
        """The stored file's bytes, in chunks. The file is opened by this call, so an unsafe URI
        (UnsafeKey) or a missing file (FileNotFoundError) is raised before a response starts."""
        handle = self.open(uri)

        def chunks() -> Iterator[bytes]:
            with handle:
                while chunk := handle.read(_CHUNK):
                    yield chunk

        return chunks()

    def get_file(self, uri: str, destination: Path) -> None:
        """Copy a stored file to a local path."""
        self.fs.get_file(self._path_of_uri(uri), str(destination))

    def put_file(
        self, local: Path, key: str, relative: str, expected: regular_files.RegularFile | None = None
    ) -> StoredFile:
        """Upload one regular file (``expected``: the one a scan found there), hashing it on the
        way; NotRegularFile if it is a symbolic link, a FIFO, a device or a hard link."""
        digest = hashlib.sha256()
        size = 0
        path = self._path(key)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with regular_files.open_regular(local, expected) as source, self.fs.open(path, "wb") as target:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                target.write(chunk)
        return StoredFile(relative, size, digest.hexdigest(), self.uri(key))

    def put_folder(self, folder: Path, prefix: str) -> list[StoredFile]:
        """Upload every regular file inside ``folder`` under ``prefix``; sorted by relative path.
        Anything else (``regular_files.scan``: symbolic links, hard links to files outside,
        FIFOs, devices) is left out; a caller that must say so scans the folder itself."""
        stored = []
        for found in regular_files.scan(folder).files:
            key = f"{prefix}/{found.relative}"
            try:
                stored.append(self.put_file(found.path, key, found.relative, expected=found))
            except regular_files.NotRegularFile as exc:  # swapped since the scan: left out too
                log.warning("not uploaded: %s", exc.message)
        return stored

    def keys(self, prefix: str) -> list[str]:
        """The keys of the files stored under ``prefix`` (the file itself when it is one), sorted;
        none that would lead outside the store (a symbolic link in a local store's folder)."""
        root = self._path(prefix).rstrip("/")
        found: list[str] = self.fs.find(root)
        keys = []
        for path in sorted(found):
            key = f"{prefix}{path[len(root) :]}"
            try:
                self._path(key)
            except UnsafeKey:
                continue
            keys.append(key)
        return keys

    def get_folder(self, prefix: str, destination: Path) -> int:
        """Download every file under ``prefix`` into ``destination`` (keeping relative paths);
        how many files there were."""
        keys = self.keys(prefix)
        for key in keys:
            local = destination / key[len(prefix) :].lstrip("/")
            local.parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(self._path(key), str(local))
        return len(keys)

    def remove(self, prefix: str) -> None:
        """Delete the file or every file under ``prefix``; nothing there is no error."""
        path = self._path(prefix)
        try:
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass  # removed meanwhile by another sweep

    def _path(self, key: str) -> str:
        if self._local:
            return resolve_under(self.root, key)
        return f"{self.root}/{clean_key(key)}"

    def _path_of_uri(self, uri: str) -> str:
        if not uri.startswith(self.url + "/"):
            raise UnsafeKey(f"{uri} is not in this artifact store ({self.url})", uri=uri)
        return self._path(uri[len(self.url) + 1 :])
