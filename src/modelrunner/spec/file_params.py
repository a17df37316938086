"""Parameters that are files (``type: string, format: file``) and how a run's parameters name one.

An uploaded file is kept once at ``uploads/<sha256>`` of the artifact store, whatever its name; a
parameter holding it has the value ``sha256:<hex>/<name>`` (a *file reference*), so the content
hash is what enters the run's cache key and the same file uploaded twice is a cache hit. The model
sees the file at ``MODELRUNNER_INPUTS/params/<param>/<name>``, and that relative path as the
parameter's value in its params.json. A name comes from the uploader and is hostile until
``safe_filename`` made it one plain file name.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

UPLOADS_PREFIX = "uploads"
PARAMS_FOLDER = "params"  # MODELRUNNER_INPUTS/params/<param>/<name>
MAX_NAME_LENGTH = 120
_REFERENCE = re.compile(r"^sha256:(?P<digest>[0-9a-f]{64})/(?P<name>[^/\\\x00]{1,120})$")
# What a name keeps: letters, digits and a few safe marks; anything else becomes '_'.
_UNSAFE = re.compile(r"[^\w.+=@-]+")


@dataclass(frozen=True)
class FileReference:
    """An uploaded file as a parameter names it: its content's sha256 and its (safe) name."""

    sha256: str
    name: str

    @property
    def value(self) -> str:
        """The parameter's value: ``sha256:<hex>/<name>``."""
        return f"sha256:{self.sha256}/{self.name}"

    @property
    def key(self) -> str:
        """Where the artifact store keeps the file."""
        return upload_key(self.sha256)

    @classmethod
    def parse(cls, value: object) -> FileReference | None:
        """The reference ``value`` holds, or None when it is not one."""
        if not isinstance(value, str):
            return None
        found = _REFERENCE.match(value)
        if found is None or found["name"] != safe_filename(found["name"]):
            return None
        return cls(found["digest"], found["name"])


def upload_key(sha256: str) -> str:
    return f"{UPLOADS_PREFIX}/{sha256}"


def safe_filename(name: str) -> str:
    """One plain file name made of what the uploader called the file: its last path segment
    (``../../etc/passwd`` is ``passwd``), control characters and NUL dropped, unusual characters
    as ``_``, no leading dot, at most ``MAX_NAME_LENGTH`` characters (the extension kept);
    ``upload`` when nothing is left."""
    name = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = _UNSAFE.sub("_", name).lstrip(".")
    if len(name) > MAX_NAME_LENGTH:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 16:
            name = stem[: MAX_NAME_LENGTH - len(extension) - 1] + "." + extension
        else:
            name = name[:MAX_NAME_LENGTH]
    return name if name.strip("._-") else "upload"


def file_params(schema: dict[str, Any]) -> list[str]:
    """The parameters a model's schema declares as files (``type: string, format: file``)."""
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return []
    return [
        name for name, declared in properties.items() if isinstance(declared, dict) and declared.get("format") == "file"
    ]


def model_path(param: str, reference: FileReference) -> str:
    """Where the model finds the file, relative to MODELRUNNER_INPUTS (its value in params.json)."""
    return f"{PARAMS_FOLDER}/{param}/{reference.name}"


def references_in(schema: dict[str, Any], params: dict[str, Any]) -> dict[str, FileReference]:
    """The file parameters given in ``params``, by name, that hold a reference."""
    found = {}
    for name in file_params(schema):
        reference = FileReference.parse(params.get(name))
        if reference is not None:
            found[name] = reference
    return found


def reference_problems(schema: dict[str, Any], params: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, what is wrong) for each file parameter given a value that names no uploaded file."""
    return [
        (
            f"params.{name}",
            "must be an uploaded file (sha256:<hex>/<name>): upload it with the run "
            f"(multipart POST .../runs/upload, or -p {name}=@PATH)",
        )
        for name in file_params(schema)
        if isinstance(params.get(name), str) and FileReference.parse(params[name]) is None
    ]


def as_model_sees(schema: dict[str, Any], params: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """``params`` as the model's params.json holds them (each file parameter the file's path
    relative to MODELRUNNER_INPUTS), and the files to put there: (folder under the inputs, file
    name, key of the stored upload)."""
    references = references_in(schema, params)
    if not references:
        return params, []
    shown = {**params, **{name: model_path(name, ref) for name, ref in references.items()}}
    return shown, [(f"{PARAMS_FOLDER}/{name}", ref.name, ref.key) for name, ref in references.items()]


def check_params_folder(params_schema: dict[str, Any], taken: Iterable[str]) -> None:
    """ValueError when a model with file parameters has an input or step called ``params``: both
    would be MODELRUNNER_INPUTS/params/."""
    if PARAMS_FOLDER in taken and file_params(params_schema):
        raise ValueError(
            f"inputs/steps: '{PARAMS_FOLDER}' holds this model's file parameters in MODELRUNNER_INPUTS; "
            "give the input or step another name"
        )
