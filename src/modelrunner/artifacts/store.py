"""The artifact store: model snapshots and run outputs under one fsspec URL."""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from fsspec.core import url_to_fs

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
    """Keys are ``/``-separated paths below the store's root URL (a local folder by default)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.fs, root = url_to_fs(self.url)
        self.root = root.rstrip("/")
        self._local = self.fs.protocol in ("file", "local") or "file" in self.fs.protocol
        if self._local:
            Path(self.root).mkdir(parents=True, exist_ok=True)

    def uri(self, key: str) -> str:
        return f"{self.url}/{key}"

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

    def get_bytes(self, uri: str) -> bytes:
        data: bytes = self.fs.cat_file(self._path_of_uri(uri))
        return data

    def open(self, uri: str) -> IO[bytes]:
        handle: IO[bytes] = self.fs.open(self._path_of_uri(uri), "rb")
        return handle

    def get_file(self, uri: str, destination: Path) -> None:
        """Copy a stored file to a local path."""
        self.fs.get_file(self._path_of_uri(uri), str(destination))

    def put_file(self, local: Path, key: str, relative: str) -> StoredFile:
        """Upload one file, hashing it on the way."""
        digest = hashlib.sha256()
        size = 0
        path = self._path(key)
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        with local.open("rb") as source, self.fs.open(path, "wb") as target:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
                target.write(chunk)
        return StoredFile(relative, size, digest.hexdigest(), self.uri(key))

    def put_folder(self, folder: Path, prefix: str) -> list[StoredFile]:
        """Upload every file below ``folder`` under ``prefix``; sorted by relative path."""
        stored = []
        for local in sorted(p for p in folder.rglob("*") if p.is_file()):
            relative = local.relative_to(folder).as_posix()
            stored.append(self.put_file(local, f"{prefix}/{relative}", relative))
        return stored

    def get_folder(self, prefix: str, destination: Path) -> int:
        """Download every file under ``prefix`` into ``destination`` (keeping relative paths);
        how many files there were."""
        root = self._path(prefix).rstrip("/")
        count = 0
        for remote in sorted(self.fs.find(root)):
            relative = remote[len(root) :].lstrip("/")
            local = destination / relative
            local.parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(remote, str(local))
            count += 1
        return count

    def remove(self, prefix: str) -> None:
        """Delete the file or every file under ``prefix``; nothing there is no error."""
        path = self._path(prefix)
        try:
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass  # removed meanwhile by another sweep

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def _path_of_uri(self, uri: str) -> str:
        if not uri.startswith(self.url + "/"):
            raise ValueError(f"{uri} is not in this artifact store")
        return self._path(uri[len(self.url) + 1 :])
