"""Bearer tokens, passwords and the server's own secrets. A token is ``<kind>_<row id>_<secret>``:
the row id finds the stored sha256 of the secret, compared in constant time; passwords are hashed
with argon2; a secret the workspace names (an SMTP password, an account key) is read from an
environment variable or from the file its ``*_FILE`` twin names."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from modelrunner.errors import ModelrunnerError
from modelrunner.store.row_ids import INT64_MAX, fits

USER_TOKEN = "mrt"  # a user's API token
ATTEMPT_TOKEN = "mra"  # an attempt's callback token: reports that attempt's progress, nothing else

_PASSWORDS = PasswordHasher()


@dataclass(frozen=True)
class Minted:
    """A new secret: ``secret`` goes into the token shown once, ``digest`` into the store."""

    secret: str
    digest: str


@dataclass(frozen=True)
class PresentedToken:
    kind: str
    row_id: int
    secret: str


def mint() -> Minted:
    secret = secrets.token_urlsafe(32)
    return Minted(secret, digest(secret))


def digest(secret: str) -> str:
    # Secrets are 256 random bits: a fast hash is enough (argon2 is for guessable passwords).
    return hashlib.sha256(secret.encode()).hexdigest()


def compose(kind: str, row_id: int, secret: str) -> str:
    return f"{kind}_{row_id}_{secret}"


def parse(token: str) -> PresentedToken | None:
    """The parts of a token in our format; None for anything else (a row id too large to be
    stored, too: no row has it)."""
    kind, _, rest = token.partition("_")
    row_id, _, secret = rest.partition("_")
    if kind not in (USER_TOKEN, ATTEMPT_TOKEN) or not (row_id.isascii() and row_id.isdigit()) or not secret:
        return None
    if len(row_id) > len(str(INT64_MAX)) or not fits(int(row_id)):  # int() refuses thousands of digits
        return None
    return PresentedToken(kind, int(row_id), secret)


def matches(secret: str, stored_digest: str | None) -> bool:
    """Whether ``secret`` is the one whose digest was stored, in constant time."""
    return stored_digest is not None and hmac.compare_digest(digest(secret), stored_digest)


def hash_password(password: str) -> str:
    return _PASSWORDS.hash(password)


def password_matches(password: str, stored_hash: str | None) -> bool:
    """Whether ``password`` is the one hashed; without a hash (no such user, no password) it
    takes as long to say no, so a wrong name cannot be told from a wrong password by timing."""
    try:
        return _PASSWORDS.verify(stored_hash or _no_password_hash(), password) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def _no_password_hash() -> str:
    return _PASSWORDS.hash(secrets.token_urlsafe(16))


def named_secret(variable: str, environ: Mapping[str, str]) -> str | None:
    """The secret in the environment variable ``variable``, else in the file that ``<variable>_FILE``
    names (stripped), else None; ModelrunnerError naming the file when it cannot be read."""
    value = environ.get(variable)
    if value is not None:
        return value
    path = environ.get(f"{variable}_FILE")
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ModelrunnerError(f"{variable}_FILE: cannot read {path}: {exc.strerror or exc}") from exc
