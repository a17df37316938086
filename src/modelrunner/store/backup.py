"""Backups of a store: its database, its run logs and its local artifact folder in one tar archive.

The archive holds, in this order: ``modelrunner-backup.json`` (what is inside and where it came
from), the database (SQLite through its online backup API, a consistent copy taken while the
server writes; PostgreSQL as ``pg_dump --format=custom``), ``logs/`` and ``artifacts/`` (the model
snapshots, outputs, dataset snapshots and checkpoints of a local artifact folder). An artifact
store elsewhere (``s3://...``) is not copied: it is backed up where it lives, and a restore keeps
using it. The secrets key is never in the archive: it must be kept apart from the database it
protects (``auth/secret_keys.py``).

The database is copied before the files, so every output the copy names is already stored when
the files are read; files written meanwhile come along unreferenced, which does no harm.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Protocol

from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import make_url

import modelrunner
from modelrunner.artifacts.keys import resolve_under
from modelrunner.artifacts.store import ArtifactStore
from modelrunner.errors import ModelrunnerError
from modelrunner.store import migrate
from modelrunner.store.database import Database

MANIFEST = "modelrunner-backup.json"
FORMAT = 1
_SQLITE_MEMBER = "database.sqlite"
_POSTGRES_MEMBER = "database.pgdump"
_LOGS = "logs"
_ARTIFACTS = "artifacts"
# Columns that hold an artifact store URI: a restore into another store moves them to its URL.
_URI_COLUMNS = (
    ("model_versions", "snapshot_uri"),
    ("outputs", "uri"),
    ("partial_outputs", "uri"),
    ("dataset_versions", "snapshot_uri"),
)
# What a restore counts (and a refusal to overwrite a store, so the operator sees what would be
# lost): table -> what one row is called.
_COUNTED = {
    "runs": "run",
    "model_versions": "model version",
    "outputs": "output",
    "users": "user",
    "dataset_versions": "dataset version",
}


class BackupError(ModelrunnerError):
    """A backup or restore that cannot be done; nothing was changed."""


class Progress(Protocol):
    """Where a backup or restore reports how far it is (the CLI draws a bar)."""

    def stage(self, description: str, total: int | None) -> None:
        """A new stage begins; ``total`` bytes are to come (None: unknown)."""

    def advance(self, n_bytes: int) -> None:
        """``n_bytes`` more of the current stage are done."""


@dataclass(frozen=True)
class Manifest:
    """What an archive holds; ``artifacts_url`` is the store's artifact store when it was made."""

    format: int
    created_at: str
    modelrunner_version: str
    database: str  # "sqlite" or "postgresql"
    revision: str | None
    artifacts_url: str
    artifacts_included: bool
    log_files: int
    artifact_files: int
    file_bytes: int  # of the log and artifact files together

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes, archive: Path) -> Manifest:
        try:
            fields = json.loads(data)
            if fields.get("format") != FORMAT:
                raise BackupError(
                    f"{archive} is a backup of format {fields.get('format')!r}; this modelrunner reads format {FORMAT}"
                )
            return cls(**fields)
        except (ValueError, TypeError) as exc:
            raise BackupError(f"{archive} has an unreadable {MANIFEST}: {exc}") from exc


@dataclass(frozen=True)
class Restored:
    """What a restore put into the store: the archive's manifest and the rows it now holds."""

    manifest: Manifest
    counts: dict[str, int]


def backup(database: Database, logs_dir: Path, artifacts_url: str, archive: Path, progress: Progress) -> Manifest:
    """Write the store into ``archive`` (gzip-compressed when its name ends in .gz or .tgz),
    atomically: a failed backup leaves no archive behind. Safe while a server uses the store."""
    artifacts = ArtifactStore(artifacts_url)
    artifact_root = Path(artifacts.root) if artifacts.is_local else None
    for folder in (logs_dir, artifact_root):
        if folder is not None and archive.resolve().is_relative_to(folder.resolve()):
            raise BackupError(f"the archive {archive} would be inside {folder}, which it backs up: write it elsewhere")
    revision = _revision(database)
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=archive.parent, prefix=".modelrunner-backup-") as work:
        dump = Path(work) / "database"
        progress.stage("database", None)
        _dump(database, dump)
        progress.advance(dump.stat().st_size)
        logs = list(_files(logs_dir))
        stored = list(_files(artifact_root)) if artifact_root else []
        manifest = Manifest(
            format=FORMAT,
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            modelrunner_version=modelrunner.__version__,
            database="sqlite" if database.is_sqlite else "postgresql",
            revision=revision,
            artifacts_url=artifacts.url,
            artifacts_included=artifact_root is not None,
            log_files=len(logs),
            artifact_files=len(stored),
            file_bytes=sum(size for _, _, size in logs + stored),
        )
        partial = Path(work) / "archive"
        compressed = archive.name.endswith((".gz", ".tgz"))
        # gzip's fastest level: on 500 MB of outputs it took 13 s against 52 s for the default
        # level 9, for an archive 3% larger (outputs are often compressed already).
        with tarfile.open(partial, "w:gz", compresslevel=1) if compressed else tarfile.open(partial, "w") as tar:
            _add_bytes(tar, MANIFEST, manifest.to_json())
            tar.add(dump, _SQLITE_MEMBER if database.is_sqlite else _POSTGRES_MEMBER, filter=_private)
            progress.stage("run logs and artifacts", manifest.file_bytes)
            for prefix, files in ((_LOGS, logs), (_ARTIFACTS, stored)):
                for path, relative, _ in files:
                    _add_file(tar, path, f"{prefix}/{relative}", progress)
        os.replace(partial, archive)
    return manifest


def restore(
    database: Database, logs_dir: Path, artifacts_url: str, archive: Path, progress: Progress, *, force: bool = False
) -> Restored:
    """Put the store saved in ``archive`` into this one. A store, log folder or local artifact
    folder that holds anything is refused unless ``force`` (then it is replaced). The archive is
    checked first; refused, nothing is changed. Stored URIs follow the artifact files to this
    store's artifact store; without files in the archive, this store must use the same one."""
    artifacts = ArtifactStore(artifacts_url)
    try:
        tar = tarfile.open(archive, "r:*")  # noqa: SIM115 (closed by the block below)
    except (OSError, tarfile.TarError) as exc:
        raise BackupError(f"cannot read the backup {archive}: {exc}") from exc
    with tar:
        members = iter(tar)
        manifest = Manifest.from_json(_read_member(tar, next(members, None), MANIFEST, archive), archive)
        _check_target(database, logs_dir, artifacts, manifest, force)
        expected = _SQLITE_MEMBER if manifest.database == "sqlite" else _POSTGRES_MEMBER
        member = next(members, None)
        if member is None or member.name != expected:
            raise BackupError(f"{archive} lacks its database ({expected}): it is not a whole backup")
        logs_dir.mkdir(parents=True, exist_ok=True)
        # The database is unpacked beside the state rather than in a /tmp that may be small.
        with tempfile.TemporaryDirectory(prefix=".modelrunner-restore-", dir=logs_dir.parent) as work:
            dump = Path(work) / "database"
            progress.stage("database", member.size)
            with dump.open("wb") as handle:
                shutil.copyfileobj(_read_stream(tar, member, archive), handle)
            progress.advance(member.size)
            _load(database, dump)
        if manifest.artifacts_included and manifest.artifacts_url != artifacts.url:
            _move_uris(database, manifest.artifacts_url, artifacts.url)
        if force:
            _empty_folder(logs_dir)
            if manifest.artifacts_included and artifacts.is_local:
                _empty_folder(Path(artifacts.root))
        progress.stage("run logs and artifacts", manifest.file_bytes)
        for member in members:
            _restore_file(tar, member, logs_dir, artifacts, archive)
            progress.advance(member.size)
    return Restored(manifest, _counts(database))


def _check_target(
    database: Database, logs_dir: Path, artifacts: ArtifactStore, manifest: Manifest, force: bool
) -> None:
    kind = "sqlite" if database.is_sqlite else "postgresql"
    if manifest.database != kind:
        raise BackupError(
            f"this is a backup of a {manifest.database} store; restore it into a {manifest.database} store "
            f"(MODELRUNNER_DATABASE_URL), not into a {kind} one"
        )
    if not manifest.artifacts_included and manifest.artifacts_url != artifacts.url:
        raise BackupError(
            f"the outputs of this backup are in the artifact store {manifest.artifacts_url}, which the backup does "
            f"not hold; restore with MODELRUNNER_ARTIFACTS_URL={manifest.artifacts_url} (this store uses "
            f"{artifacts.url})"
        )
    if force:
        return
    held = [describe({table: count}) for table, count in _counts(database).items() if count]
    if _has_rows(database) and not held:
        held = ["rows"]
    if any(_files(logs_dir)):
        held.append(f"run logs in {logs_dir}")
    if manifest.artifacts_included and artifacts.is_local and any(_files(Path(artifacts.root))):
        held.append(f"files in {artifacts.root}")
    if held:
        raise BackupError(
            "this store is not empty (it holds " + ", ".join(held) + "); stop its server and run the restore "
            "again with --force to replace everything in it with the backup"
        )


def _revision(database: Database) -> str | None:
    if "alembic_version" not in inspect(database.write_engine).get_table_names():
        raise BackupError("this store has no modelrunner tables: there is nothing to back up")
    return migrate.current_revision(database)


def _dump(database: Database, destination: Path) -> None:
    if database.is_sqlite:
        # One step (pages=-1): a step-wise copy restarts whenever the server writes in between.
        with _sqlite(database) as source, closing(sqlite3.connect(destination)) as target:
            source.backup(target, pages=-1)
        return
    _postgres_tool("pg_dump", database, ["--format=custom", "--no-owner", "--no-privileges", f"--file={destination}"])


def _load(database: Database, dump: Path) -> None:
    if database.is_sqlite:
        # The backup API replaces the whole target database in one transaction.
        with closing(sqlite3.connect(dump)) as source, _sqlite(database) as target:
            if source.execute("PRAGMA quick_check").fetchone() != ("ok",):
                raise BackupError("the database in the backup is damaged (SQLite's quick_check fails)")
            source.backup(target, pages=-1)
        return
    # pg_restore creates every table; those of the store's present schema go first.
    existing = MetaData()
    existing.reflect(database.write_engine)
    existing.drop_all(database.write_engine)
    _postgres_tool(
        "pg_restore", database, ["--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction", str(dump)]
    )


@contextmanager
def _sqlite(database: Database) -> Iterator[sqlite3.Connection]:
    path = make_url(database.url).database
    if not path or path == ":memory:":
        raise BackupError("an in-memory SQLite store cannot be backed up or restored")
    connection = sqlite3.connect(path, timeout=30)
    try:
        yield connection
    finally:
        connection.close()


def _postgres_tool(tool: str, database: Database, arguments: list[str]) -> None:
    """Run pg_dump or pg_restore on the store; the password goes in the environment, never on a
    command line (any user can read those)."""
    url = make_url(database.url)
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    target = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    try:
        finished = subprocess.run(
            [tool, f"--dbname={target}", *arguments], env=env, capture_output=True, text=True, check=False
        )
    except FileNotFoundError as exc:
        raise BackupError(
            f"{tool} is not installed: install PostgreSQL's client tools of the server's version or newer "
            "(Debian and Ubuntu: apt-get install postgresql-client)"
        ) from exc
    if finished.returncode != 0:
        raise BackupError(f"{tool} failed: {finished.stderr.strip() or f'exit status {finished.returncode}'}")


def _files(root: Path | None) -> Iterator[tuple[Path, str, int]]:
    """Every regular file below ``root``: its path, its path relative to ``root``, its size.
    Files still being written (``*.partial``) and links are left out."""
    if root is None or not root.is_dir():
        return
    for folder, folders, names in os.walk(root):
        folders.sort()
        for name in sorted(names):
            path = Path(folder) / name
            if name.endswith(".partial") or path.is_symlink():
                continue
            try:
                size = path.stat().st_size
            except FileNotFoundError:  # removed meanwhile (a checkpoint sweep)
                continue
            yield path, path.relative_to(root).as_posix(), size


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(dt.datetime.now(dt.UTC).timestamp())
    tar.addfile(info, io.BytesIO(data))


def _add_file(tar: tarfile.TarFile, path: Path, name: str, progress: Progress) -> None:
    try:
        handle = path.open("rb")
    except FileNotFoundError:  # removed since it was listed: nothing the database names
        return
    with handle:
        tar.addfile(_private(tar.gettarinfo(arcname=name, fileobj=handle)), _Counted(handle, progress))


def _private(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """An entry readable by its owner only, owned by no one in particular: outputs and logs are
    the users' data, and the archive may be unpacked on another machine."""
    info.mode = 0o600
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class _Counted:
    """A file whose reads advance the progress bar."""

    def __init__(self, handle: IO[bytes], progress: Progress) -> None:
        self._handle = handle
        self._progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self._handle.read(size)
        self._progress.advance(len(data))
        return data


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo | None, name: str, archive: Path) -> bytes:
    if member is None or member.name != name:
        raise BackupError(f"{archive} is not a modelrunner backup (it does not begin with {name})")
    return _read_stream(tar, member, archive).read()


def _read_stream(tar: tarfile.TarFile, member: tarfile.TarInfo, archive: Path) -> IO[bytes]:
    stream = tar.extractfile(member) if member.isfile() else None
    if stream is None:
        raise BackupError(f"{archive}: {member.name} is not a file")
    return stream


def _restore_file(
    tar: tarfile.TarFile, member: tarfile.TarInfo, logs_dir: Path, artifacts: ArtifactStore, archive: Path
) -> None:
    prefix, _, relative = member.name.partition("/")
    if not member.isfile() or prefix not in (_LOGS, _ARTIFACTS) or not relative:
        raise BackupError(f"{archive} holds {member.name!r}, which no backup holds: it was not made by modelrunner")
    source = _read_stream(tar, member, archive)
    if prefix == _ARTIFACTS:
        artifacts.put_stream(relative, source)  # confined to the store like any key
        return
    target = Path(resolve_under(str(logs_dir), relative, "log file"))
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as handle:
        shutil.copyfileobj(source, handle)


def _move_uris(database: Database, old: str, new: str) -> None:
    """Point every stored URI under the artifact store ``old`` to the same key under ``new``."""
    present = set(inspect(database.write_engine).get_table_names())  # a backup of an older schema lacks some
    with database.write() as session:
        for table, column in _URI_COLUMNS:
            if table not in present:
                continue
            session.execute(
                text(
                    f"UPDATE {table} SET {column} = :new || substr({column}, :cut) "  # the names are ours
                    f"WHERE substr({column}, 1, :length) = :old"
                ),
                {"new": new + "/", "old": old + "/", "length": len(old) + 1, "cut": len(old) + 2},
            )


def _has_rows(database: Database) -> bool:
    with database.read() as session:
        for table in inspect(database.read_engine).get_table_names():
            if table != "alembic_version" and session.execute(text(f'SELECT 1 FROM "{table}" LIMIT 1')).first():
                return True
    return False


def _counts(database: Database) -> dict[str, int]:
    """Rows of the tables an operator would miss (those the store has), by table."""
    present = set(inspect(database.read_engine).get_table_names())
    with database.read() as session:
        return {
            table: int(session.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one())
            for table in _COUNTED
            if table in present
        }


def describe(counts: dict[str, int]) -> str:
    """``3 runs, 1 user, ...`` for counts by table."""
    return ", ".join(f"{count} {_COUNTED[table]}{'' if count == 1 else 's'}" for table, count in counts.items())


def _empty_folder(folder: Path) -> None:
    if folder.is_dir():
        for child in folder.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
