"""Webhook signing secrets at rest: encrypted with the secrets key (auth/secret_keys.py) when a
subscription is created, decrypted only to sign a delivery, re-encrypted by a key rotation.

What callers can rely on:

- the database never holds a webhook secret in clear (revision 0006 encrypted those stored
  before);
- ``check_readable`` fails a server's start, with a message naming the key file, when the keys
  cannot read the stored secrets (a lost or wrong key file), rather than failing every delivery;
- ``rotate_key`` loses no secret wherever it is killed: the new key is written to the key file
  beside the old ones first (atomically), the secrets are re-encrypted in committed batches, and
  the old keys leave the file only once every stored secret is readable with the new one. Run
  again, it completes the work (with one more new key). Servers read the changed key file on
  their next use, so they keep delivering during a rotation.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelrunner.auth.secret_keys import SecretKeys, new_key
from modelrunner.store import notify_queries
from modelrunner.store.database import Database

_BATCH = 200


@dataclass(frozen=True)
class Rotated:
    """A finished rotation: how many stored secrets were re-encrypted, and how many old keys the
    key file dropped."""

    reencrypted: int
    dropped_keys: int


def check_readable(database: Database, keys: SecretKeys) -> None:
    """SecretKeyError (naming where the keys come from) unless the keys read a stored secret."""
    with database.read() as session:
        stored = notify_queries.stored_secrets(session, after_id=0, limit=1)
    if stored:
        keys.decrypt(stored[0][1])


def rotate_key(database: Database, keys: SecretKeys) -> Rotated:
    """Put a new key first in the key file, re-encrypt every stored webhook secret with it, then
    drop the old keys from the file. SecretKeyError for keys given in MODELRUNNER_SECRETS_KEY (the
    file is what rotates) or keys that cannot read the stored secrets."""
    keys.require_file()
    check_readable(database, keys)
    with database.read() as session:
        anything_stored = bool(notify_queries.stored_secrets(session, after_id=0, limit=1))
    old = keys.keys(create=not anything_stored)
    newest = new_key()
    keys.write([newest, *old])
    # The rotation's own ring, from memory: it still reads the old keys after the file drops them.
    ring = SecretKeys(path=keys.path, given=[newest, *old])
    count = _reencrypt(database, ring)
    keys.write([newest])
    # A server that read the file just before it changed may have stored a secret with an old key
    # meanwhile: this pass catches it while the rotation still holds that key.
    count += _reencrypt(database, ring)
    return Rotated(count, len(old))


def _reencrypt(database: Database, ring: SecretKeys) -> int:
    """Re-encrypt with the newest key every stored secret it cannot read alone; how many."""
    count, after = 0, 0
    while True:
        with database.write() as session:
            batch = notify_queries.stored_secrets(session, after_id=after, limit=_BATCH)
            for subscription_id, sealed in batch:
                if not ring.readable_by_newest_alone(sealed):
                    count += notify_queries.replace_secret_if(
                        session, subscription_id, sealed, ring.reencrypted(sealed)
                    )
        if len(batch) < _BATCH:
            return count
        after = batch[-1][0]
