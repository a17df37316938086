"""``modelrunner secrets``: the key that encrypts webhook secrets in the store, on the server's machine."""

from __future__ import annotations

import typer

from modelrunner.cli import options, output
from modelrunner.cli.configuration import build_settings, opened_database

secrets_app = typer.Typer(
    help="The key that encrypts webhook secrets in the database (kept apart from it, in a key file). "
    "Run on the server's machine.",
    no_args_is_help=True,
)


@secrets_app.command("rotate-key")
def rotate_key(
    database_url: options.DatabaseUrl = None,
    workspace: options.WorkspaceFolder = None,
    data_dir: options.DataDir = None,
    secrets_key_file: options.SecretsKeyFile = None,
    profile: options.Profile = None,
) -> None:
    """Make a new key, re-encrypt every stored webhook secret with it, and drop the old keys.

    Safe to run while servers run (they read the changed key file) and safe to interrupt: the old
    keys stay in the key file until every secret is re-encrypted; run it again to finish. Back the
    new key file up: without it the webhook secrets cannot be read.
    """
    from modelrunner.auth.secret_keys import SecretKeys
    from modelrunner.notify import webhook_secrets
    from modelrunner.store import migrate

    settings, _ = build_settings(
        database_url=database_url,
        workspace=workspace,
        data_dir=data_dir,
        secrets_key_file=secrets_key_file,
        profile=profile,
    ).with_profile()
    keys = SecretKeys.of(settings)
    with opened_database(settings) as database:
        migrate.upgrade(database, secret_keys=keys)
        rotated = webhook_secrets.rotate_key(database, keys)
    output.stdout().print(
        output.cell(
            f"new key in {keys.path}; re-encrypted {rotated.reencrypted} webhook secret"
            f"{'' if rotated.reencrypted == 1 else 's'}, dropped {rotated.dropped_keys} old key"
            f"{'' if rotated.dropped_keys == 1 else 's'}"
        )
    )
