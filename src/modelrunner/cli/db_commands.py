"""``modelrunner db``: the store's schema, its backups and their restore."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from modelrunner.cli import options, output
from modelrunner.cli.configuration import build_settings, masked_url, opened_database

if TYPE_CHECKING:
    from modelrunner.settings import Settings

db_app = typer.Typer(
    help="Manage the database of the platform: its schema migrations, backups and restores.", no_args_is_help=True
)

ArtifactsUrl = Annotated[
    str | None,
    typer.Option(
        envvar="MODELRUNNER_ARTIFACTS_URL",
        help="fsspec URL of the artifact store, as the server is given it. [default: `DATA_DIR/artifacts`]",
    ),
]


@db_app.command("upgrade")
def upgrade(
    database_url: options.DatabaseUrl = None,
    workspace: options.WorkspaceFolder = None,
    data_dir: options.DataDir = None,
    secrets_key_file: options.SecretsKeyFile = None,
    profile: options.Profile = None,
) -> None:
    """Bring the database schema to the newest revision and print it.

    Safe to run on an up-to-date database; `modelrunner serve` does the same when it starts.
    Webhook secrets stored in clear by older versions are encrypted with the secrets key.
    """
    from modelrunner.auth.secret_keys import SecretKeys
    from modelrunner.store import migrate

    settings, _ = build_settings(
        database_url=database_url,
        workspace=workspace,
        data_dir=data_dir,
        secrets_key_file=secrets_key_file,
        profile=profile,
    ).with_profile()
    with opened_database(settings) as database:
        database.ping()
        migrate.upgrade(database, secret_keys=SecretKeys.of(settings))
        revision = migrate.current_revision(database)
    shown = masked_url(settings.resolved_database_url)
    output.stdout().print(f"database {shown} is at revision {revision}", markup=False, soft_wrap=True)


@db_app.command("backup")
def backup(
    archive: Annotated[
        Path,
        typer.Argument(
            help="The archive to write (a tar file; gzip-compressed when its name ends in .gz or .tgz).",
            dir_okay=False,
        ),
    ],
    database_url: options.DatabaseUrl = None,
    artifacts_url: ArtifactsUrl = None,
    workspace: options.WorkspaceFolder = None,
    data_dir: options.DataDir = None,
    profile: options.Profile = None,
) -> None:
    """Save the store into ARCHIVE: the database, the run logs and a local artifact folder.

    Safe while the server runs: SQLite is copied through its online backup API, PostgreSQL with
    pg_dump (PostgreSQL's client tools must be installed). An artifact store elsewhere (s3://...)
    is not copied: back it up where it lives. The secrets key (DATA_DIR/secrets.key) is never in
    the archive: keep a copy of it apart from the backups.
    """
    from modelrunner.artifacts.logs import logs_folder
    from modelrunner.store import backup as store_backup

    settings = _settings(database_url, artifacts_url, workspace, data_dir, profile)
    with opened_database(settings) as database, _progress_bar() as progress:
        manifest = store_backup.backup(
            database, logs_folder(settings.state_dir), settings.resolved_artifacts_url, archive, progress
        )
    size = output.size(archive.stat().st_size)
    artifacts = (
        f"{manifest.artifact_files} artifact files"
        if manifest.artifacts_included
        else f"no artifact files (they stay in {manifest.artifacts_url}: back that up separately)"
    )
    output.stdout().print(
        f"backed up {masked_url(settings.resolved_database_url)} (revision {manifest.revision}) into {archive} "
        f"({size}): the database, {manifest.log_files} log files, {artifacts}",
        markup=False,
        soft_wrap=True,
    )


@db_app.command("restore")
def restore(
    archive: Annotated[
        Path,
        typer.Argument(help="An archive written by `modelrunner db backup`.", exists=True, dir_okay=False),
    ],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace a store that holds anything (its database, run logs and local artifact files). "
            "Stop its server first.",
        ),
    ] = False,
    database_url: options.DatabaseUrl = None,
    artifacts_url: ArtifactsUrl = None,
    workspace: options.WorkspaceFolder = None,
    data_dir: options.DataDir = None,
    profile: options.Profile = None,
) -> None:
    """Put the store saved in ARCHIVE into this store (an empty one, unless --force).

    The database must be of the kind backed up (SQLite or PostgreSQL); its schema is brought up to
    date when the server starts (or by `modelrunner db upgrade`), so a backup of an older version
    restores too. Stored outputs follow the artifact files to this store's artifact store. Give
    the server the secrets key the backed-up server had, or its webhooks cannot sign.
    """
    from modelrunner.artifacts.logs import logs_folder
    from modelrunner.store import backup as store_backup

    settings = _settings(database_url, artifacts_url, workspace, data_dir, profile)
    with opened_database(settings) as database, _progress_bar() as progress:
        restored = store_backup.restore(
            database, logs_folder(settings.state_dir), settings.resolved_artifacts_url, archive, progress, force=force
        )
    output.stdout().print(
        f"restored {archive} (made {restored.manifest.created_at}, revision {restored.manifest.revision}) into "
        f"{masked_url(settings.resolved_database_url)}: {store_backup.describe(restored.counts)}",
        markup=False,
        soft_wrap=True,
    )


def _settings(
    database_url: str | None,
    artifacts_url: str | None,
    workspace: Path | None,
    data_dir: Path | None,
    profile: str | None,
) -> Settings:
    settings, _ = build_settings(
        database_url=database_url, artifacts_url=artifacts_url, workspace=workspace, data_dir=data_dir, profile=profile
    ).with_profile()
    return settings


class _Bar:
    """The store's progress reports drawn as one Rich task per stage."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: TaskID | None = None

    def stage(self, description: str, total: int | None) -> None:
        self._finish()
        self._task = self._progress.add_task(description, total=total)

    def advance(self, n_bytes: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, n_bytes)

    def _finish(self) -> None:
        if self._task is not None:
            task = self._progress.tasks[self._task]
            self._progress.update(self._task, total=task.completed, completed=task.completed)


@contextmanager
def _progress_bar() -> Iterator[_Bar]:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=output.stderr(),
        transient=False,
    ) as progress:
        bar = _Bar(progress)
        yield bar
        bar._finish()
