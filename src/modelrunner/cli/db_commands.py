"""``modelrunner db``: the store's schema."""

from __future__ import annotations

import typer

from modelrunner.cli import options, output
from modelrunner.cli.configuration import build_settings, masked_url, opened_database

db_app = typer.Typer(help="Manage the database of the platform (its schema migrations).", no_args_is_help=True)


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
