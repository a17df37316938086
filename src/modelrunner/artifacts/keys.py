"""Keys and relative paths that come from outside the server's own code (a request, a worker's
report, a model's outputs, a stored URI handed back): the one place that decides whether one
stays below the folder it is resolved in.

A key is a ``/``-separated relative path. It may not be empty, absolute, hold a backslash or a
NUL, or have an empty, ``.`` or ``..`` segment, neither as given nor once percent-decoded (again
and again: a URL or an object store further on may decode it once more). On the local file
system, the path it names must also stay below the root once every symbolic link is followed.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote

from modelrunner.errors import ModelrunnerError

_RULE = "a key is a relative path below its folder, without '..', '.' or empty segments, backslashes or NUL"


class UnsafeKey(ModelrunnerError, ValueError):
    """A key or path that could name something outside the folder it is looked up in (HTTP 400).
    A ValueError too: what reads a stored outcome or URI treats it as any malformed value."""


def clean_key(key: str, what: str = "key") -> str:
    """``key`` itself, once it is a relative path that stays below any folder; UnsafeKey naming
    what is wrong otherwise (``what`` names the key in the message: "key", "prefix", "output")."""
    form = key
    while True:
        problem = _problem(form)
        if problem is not None:
            decoded = "" if form == key else f" (once decoded: {form!r})"
            raise UnsafeKey(f"{what} {key!r}{decoded} {problem}: {_RULE}", key=key)
        decoded_form = unquote(form)
        if decoded_form == form:
            return key
        form = decoded_form


def resolve_under(root: Path | str, key: str, what: str = "key") -> str:
    """The local path of ``key`` below ``root``; UnsafeKey when the key is not clean or the path,
    its symbolic links followed (those that exist yet), leads outside ``root``."""
    path = os.path.join(root, clean_key(key, what))
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise UnsafeKey(f"{what} {key!r} leads outside its folder through a symbolic link", key=key)
    return path


def _problem(key: str) -> str | None:
    if not key:
        return "is empty"
    if "\x00" in key:
        return "holds a NUL character"
    if "\\" in key:
        return "holds a backslash"
    if key.startswith("/"):
        return "is an absolute path"
    for segment in key.split("/"):
        if not segment:
            return "has an empty segment ('//', or a '/' at its end)"
        if segment in (".", ".."):
            return f"has a {segment!r} segment"
    return None
