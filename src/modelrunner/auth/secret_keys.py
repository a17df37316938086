"""The keys that encrypt secrets the database must keep readable (webhook signing secrets), kept
apart from the database so a copy of it, or of its backups, gives none of them away.

They are Fernet keys (AES-128-CBC with HMAC-SHA256, from ``cryptography``), newest first: the
newest encrypts, every one decrypts (MultiFernet), so a rotation re-encrypts stored secrets while
the old key still reads them. They come from ``MODELRUNNER_SECRETS_KEY`` (comma-separated) or
from a key file, one key a line, ``<data_dir>/secrets.key`` unless ``MODELRUNNER_SECRETS_KEY_FILE``
names another; the file is created (mode 0600) the first time a secret is stored, and replaced
only atomically (a new file renamed over it), so a reader sees the old keys or the new ones.

The file is read again whenever it changed, so a running server follows a rotation made by
``modelrunner secrets rotate-key``. Errors name where the keys come from, never a key.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from modelrunner.errors import ModelrunnerError
from modelrunner.settings import Settings

ENV_KEYS = "MODELRUNNER_SECRETS_KEY"


class SecretKeyError(ModelrunnerError):
    """The keys are missing, malformed or not the ones the stored secrets were encrypted with."""


class SecretKeys:
    """Encrypts and decrypts secrets with the keys of a file (``path``) or given ones (``given``)."""

    def __init__(self, *, path: Path, given: Sequence[str] | None = None) -> None:
        self.path = path
        self._given = list(given) if given is not None else None
        self._lock = threading.Lock()
        self._read: tuple[tuple[int, int, int], list[str]] | None = None  # the file's (inode, mtime, size), keys

    @classmethod
    def of(cls, settings: Settings) -> SecretKeys:
        given = settings.secrets_key.get_secret_value().split(",") if settings.secrets_key is not None else None
        return cls(path=settings.resolved_secrets_key_file, given=given)

    @property
    def where(self) -> str:
        """Where the keys come from, for messages."""
        return ENV_KEYS if self._given is not None else f"the key file {self.path}"

    def encrypt(self, clear: str) -> str:
        """``clear`` encrypted with the newest key (a key file is created on first need)."""
        return _ring(self.keys(create=True), self.where).encrypt(clear.encode()).decode()

    def decrypt(self, sealed: str) -> str:
        """The secret ``encrypt`` made; SecretKeyError if no key can read it."""
        try:
            return _ring(self.keys(), self.where).decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise self._unreadable() from None

    def reencrypted(self, sealed: str) -> str:
        """``sealed`` decrypted with any key and encrypted again with the newest one."""
        try:
            return _ring(self.keys(), self.where).rotate(sealed.encode()).decode()
        except InvalidToken:
            raise self._unreadable() from None

    def readable_by_newest_alone(self, sealed: str) -> bool:
        return _readable(Fernet(self.keys()[0]), sealed)

    def keys(self, *, create: bool = False) -> list[str]:
        """The keys, newest first; a missing key file is created with a new key only if ``create``."""
        if self._given is not None:
            given = [key.strip() for key in self._given if key.strip()]
            if not given:
                raise SecretKeyError(f"{ENV_KEYS} holds no key")
            return [_checked(key, ENV_KEYS) for key in given]
        with self._lock:
            try:
                stat = self.path.stat()
            except FileNotFoundError:
                if not create:
                    raise SecretKeyError(
                        f"the key file {self.path} does not exist, and the webhook secrets in the database "
                        "were encrypted with a key in it: restore it, or point MODELRUNNER_SECRETS_KEY_FILE "
                        "to it"
                    ) from None
                _create(self.path)
                stat = self.path.stat()
            seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            if self._read is None or self._read[0] != seen:
                self._read = (seen, _read_keys(self.path))
            return list(self._read[1])

    def require_file(self) -> None:
        """SecretKeyError unless the keys are in a file (what a rotation rewrites)."""
        if self._given is not None:
            raise SecretKeyError(
                f"the keys come from {ENV_KEYS}, which modelrunner cannot change: rotating needs a key file "
                "(put the keys in a file, one a line, name it with MODELRUNNER_SECRETS_KEY_FILE and unset "
                f"{ENV_KEYS})"
            )

    def write(self, keys: Sequence[str]) -> None:
        """Replace the key file with ``keys`` (newest first), atomically and durably."""
        self.require_file()
        _write_atomically(self.path, "".join(f"{key}\n" for key in keys))

    def _unreadable(self) -> SecretKeyError:
        return SecretKeyError(
            f"a stored secret cannot be decrypted with the keys in {self.where}: it was encrypted with another "
            "key (a different or replaced key file, or a key removed too early); restore the key file that was "
            "used, or point MODELRUNNER_SECRETS_KEY_FILE to it"
        )


def new_key() -> str:
    return Fernet.generate_key().decode()


def _ring(keys: list[str], where: str) -> MultiFernet:
    return MultiFernet([Fernet(_checked(key, where)) for key in keys])


def _readable(fernet: Fernet, sealed: str) -> bool:
    try:
        fernet.decrypt(sealed.encode())
    except InvalidToken:
        return False
    return True


def _checked(key: str, where: str) -> str:
    try:
        Fernet(key)
    except ValueError:
        raise SecretKeyError(
            f"{where} holds something that is not a Fernet key (32 url-safe base64-encoded bytes)"
        ) from None
    return key


def _read_keys(path: Path) -> list[str]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise SecretKeyError(f"cannot read the key file {path}: {exc.strerror or exc}") from exc
    keys = [line.strip() for line in text.splitlines() if line.strip()]
    if not keys:
        raise SecretKeyError(f"the key file {path} holds no key; restore it from where you keep it")
    return [_checked(key, f"the key file {path}") for key in keys]


def _create(path: Path) -> None:
    """A new key file with one new key; another process creating it at the same moment wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = _staged(path, f"{new_key()}\n")
    try:
        os.link(staged, path)  # fails if the file appeared meanwhile: then theirs is the key
    except FileExistsError:
        pass
    finally:
        os.unlink(staged)
    _sync_folder(path.parent)


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = _staged(path, text)
    os.replace(staged, path)
    _sync_folder(path.parent)


def _staged(path: Path, text: str) -> Path:
    """A complete, synced file with ``text`` (mode 0600) beside ``path``."""
    descriptor, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp: mode 0600
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    return Path(name)


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
