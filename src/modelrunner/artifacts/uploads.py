"""Storing files people upload (file parameters: spec/file_params.py), content-addressed, streamed
through a spool file so that no upload is held in memory."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from modelrunner.artifacts.store import ArtifactStore
from modelrunner.errors import InvalidInput, ModelrunnerError
from modelrunner.spec.file_params import FileReference, safe_filename

_CHUNK = 1 << 20


class UploadTooLarge(ModelrunnerError):
    """An upload over its size limit (HTTP 413); ``setting`` names the limit."""


def store_upload(
    artifacts: ArtifactStore, source: IO[bytes], filename: str, *, max_bytes: int, setting: str
) -> FileReference:
    """Stream ``source`` into the store, hashing it on the way; the reference to it. Nothing is
    kept when it holds more than ``max_bytes`` (UploadTooLarge naming ``setting``); a file
    uploaded before is not stored again."""
    name = safe_filename(filename)
    digest = hashlib.sha256()
    size = 0
    with tempfile.NamedTemporaryFile(prefix="modelrunner-upload-") as spool:
        while chunk := source.read(_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise UploadTooLarge(too_large(name, max_bytes, setting), file=name, setting=setting)
            digest.update(chunk)
            spool.write(chunk)
        spool.flush()
        reference = FileReference(digest.hexdigest(), name)
        if not artifacts.exists(reference.key):
            artifacts.put_file(Path(spool.name), reference.key, reference.key)
    return reference


def too_large(name: str, max_bytes: int, setting: str) -> str:
    return (
        f"file {name!r} is larger than this server takes: at most {max_bytes} bytes "
        f"({setting}, MODELRUNNER_{setting.upper()})"
    )


def require_stored(artifacts: ArtifactStore, references: Iterable[tuple[str, FileReference]]) -> None:
    """InvalidInput naming the parameter whose file the store does not hold."""
    for param, reference in references:
        if not artifacts.exists(reference.key):
            raise InvalidInput(
                f"params.{param}: no uploaded file with sha256 {reference.sha256}; upload it with the run",
                field=f"params.{param}",
            )
