"""``modelrunner users``, ``groups`` and ``tokens``: accounts, administered on the server's machine.

Like ``modelrunner db upgrade`` (and Django's ``createsuperuser``), these commands open the store
themselves rather than asking a server: whoever can read the server's database is its
administrator already, and the first site admin gets its first token this way. Each command
applies pending migrations and creates the first site admin ``admin`` on a store without users,
so ``tokens create --user admin`` works on a fresh workspace before the first ``serve``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelrunner.cli import options, output
from modelrunner.cli.configuration import build_settings, masked_url, opened_database
from modelrunner.errors import ModelrunnerError
from modelrunner.spec.duration import HINT, parse_duration
from modelrunner.store.row_ids import INT64_MAX

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

users_app = typer.Typer(
    help="Users: people (or integrations) who call the API with tokens. Run on the server's machine.",
    no_args_is_help=True,
)
groups_app = typer.Typer(
    help="Groups: teams that `access:` in modelrunner.yaml grants models to. Run on the server's machine.",
    no_args_is_help=True,
)
tokens_app = typer.Typer(
    help="API tokens: what the CLI (MODELRUNNER_TOKEN) and HTTP clients (`Authorization: Bearer`) sign in "
    "with. Run on the server's machine.",
    no_args_is_help=True,
)

UserName = Annotated[
    str, typer.Argument(help="The user's name (lowercase letters, digits, - and _).", show_default=False)
]
GroupName = Annotated[
    str, typer.Argument(help="The group's name (lowercase letters, digits, - and _).", show_default=False)
]


@dataclasses.dataclass(frozen=True)
class _StoreOptions:
    """Where the accounts live: the store of the server's workspace, as ``serve`` finds it."""

    database_url: str | None
    workspace: Path | None
    data_dir: Path | None
    profile: str | None


@contextmanager
def _accounts(where: _StoreOptions) -> Iterator[Session]:
    """A write session on the store (migrated, with its first site admin); its changes commit
    together when the block ends without an error. Database failures become one message naming
    the (masked) database URL."""
    from modelrunner.auth import accounts
    from modelrunner.auth.secret_keys import SecretKeys
    from modelrunner.spec.workspace import WORKSPACE_FILE
    from modelrunner.store import migrate

    settings, _ = build_settings(
        database_url=where.database_url, workspace=where.workspace, data_dir=where.data_dir, profile=where.profile
    ).with_profile()
    # The store is found through the workspace: a wrong folder would quietly get a new store (and a
    # new first admin) that no server reads.
    found_through_workspace = settings.database_url is None and settings.data_dir is None
    if found_through_workspace and not (settings.workspace / WORKSPACE_FILE).is_file():
        raise ModelrunnerError(
            f"{settings.workspace.resolve()} is not a workspace (it has no {WORKSPACE_FILE}); accounts live in "
            "the store of the server's workspace: give --workspace (MODELRUNNER_WORKSPACE), or --database-url"
        )
    with opened_database(settings) as database:
        migrate.upgrade(database, secret_keys=SecretKeys.of(settings))
        with database.write() as session:
            created = accounts.ensure_first_admin(session)
        if created:
            output.hint(
                f"created the first site admin '{accounts.FIRST_ADMIN}' in {masked_url(settings.resolved_database_url)}"
            )
        with database.write() as session:
            yield session


# --- users --------------------------------------------------------------------------------------


@users_app.command("add")
def add_user(
    name: UserName,
    email: Annotated[str | None, typer.Option(envvar="MODELRUNNER_EMAIL", help="The user's e-mail address.")] = None,
    admin: Annotated[
        bool,
        typer.Option("--admin", envvar="MODELRUNNER_ADMIN", help="A site admin: manages accounts and may do anything."),
    ] = False,
    group: Annotated[
        list[str] | None,
        typer.Option(
            "--group", "-g", envvar="MODELRUNNER_GROUP", help="Put the user in this existing group; repeat for more."
        ),
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            envvar="MODELRUNNER_PASSWORD_STDIN",
            help="Read a password (for the web UI's sign-in) from standard input; asked for at a terminal.",
        ),
    ] = False,
    database_url: options.DatabaseUrl = None,
    workspace: options.WorkspaceFolder = None,
    data_dir: options.DataDir = None,
    profile: options.Profile = None,
) -> None:
    """Add a user. Nothing changes if the name is taken or a group is unknown.

    The user signs in with API tokens (`modelrunner tokens create --user NAME`); a password is
    only for the web UI.
    """
    from modelrunner.auth import accounts

    password = _read_password() if password_stdin else None
    groups = list(dict.fromkeys(group or []))
    with _accounts(_StoreOptions(database_url, workspace, data_dir, profile)) as session:
        for group_name in groups:
            accounts.group(session, group_name)  # an unknown group fails before anything is written
        accounts.add_user(session, name, email=email, password=password, is_admin=admin)
        for group_name in groups:
            accounts.add_member(session, group_name, name)
    what = " (site admin)" if admin else ""
    where = f" in group{'s' if len(groups) > 1 else ''} {', '.join(groups)}" if groups else ""
    output.stdout().print(output.cell(f"added user '{name}'{what}{where}"))
    output.hint(f"create their token with: modelrunner tokens create --user {name}")


@users_app.command("list")
def list_users(
    json_output: options.Json = False,
    database_url: options.DatabaseUrl = None,
    workspace: options.WorkspaceFolder = None,
    data_dir: options.DataDir = None,
    profile: options.Profile = None,
) -> None:
    """List the users: e-mail, site admin, disabled, groups, and how many of their tokens work."""
    from modelrunner.auth import accounts

    with _accounts(_StoreOptions(database_url, workspace, data_dir, profile)) as session:
        users = accounts.list_users(session)
    if json_output:
        output.print_json([_plain(user) for user in users])
        return
    table = output.table("user", "email", "admin", "disabled", "groups", "active tokens", "password", "created")
    for user in users:
        table.add_row(
            output.cell(user.name),
            output.cell(user.email),
            _yes(user.is_admin),
            _yes(user.disabled),
            output.cell(", ".join(user.groups)),
            str(user.active_tokens),
            _yes(user.has_password),
            _local(user.created_at),
        )
    output.stdout().print(table)


@users_app.command("set-password")
def set_password(
    name: UserName,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            envvar="MODELRUNNER_PASSWORD_STDIN",
            help="Read the new password from standard input (without it: asked for at a terminal).",
        ),
    ] = False,
    database_url: options.DatabaseUrl = None,
    workspace: options.WorkspaceFolder = None,
    data_dir: options.DataDir = None,
    profile: options.Profile = None,
) -> None:
    """Set (or replace) a user's password for the web UI's sign-in. Their API tokens keep working.

    Every web UI session of the user ends: browsers signed in with the old password must sign in
    again. Only the password's argon2id hash is stored.
    """
    from modelrunner.auth import accounts

    # Without the flag, only a terminal prompt will do: piped input is read only when asked for.
    if not password_stdin and not sys.stdin.isatty():
        raise ModelrunnerError("no terminal to ask for the password: pipe it in with --password-stdin")
    password = _read_password()
    with _accounts(_StoreOptions(database_url, workspace, data_dir, profile)) as session:
        accounts.set_password(session, name, password)
    output.stdout().print(output.cell(f"set the password of user '{name}'"))


@users_app.command("disable")
def disable_user(
    name: UserName,
    database_url: options.DatabaseUrl = None,
    workspace: options.WorkspaceFolder = None,
    data_dir: options.DataDir = None,
    profile: options.Profile = None,
) -> None:
    """Disable a user: their tokens, password and web UI sessions stop working at once (tokens and
    password until `users enable`; sessions for good)."""
    _set_disabled(name, True, _StoreOptions(database_url, workspace, data_dir, profile))


@users_app.command("enable")
def enable_user(
    name: UserName,
    database_url: options.DatabaseUrl = None,
    workspace: options.WorkspaceFolder = None,
    data_dir: options.DataDir = None,
    profile: options.Profile = None,
) -> None:
    """Enable a disabled user again: their tokens that are neither revoked nor expired work again."""
    _set_disabled(name, False, _StoreOptions(database_url, workspace, data_dir, profile))


@users_app.command("sign-out")
def sign_out_user(
    name: UserName,
    database_url: options.DatabaseUrl = None,
    workspace: options.WorkspaceFolder = None,
    data_dir: options.DataDir = None,
    profile: options.Profile = None,
) -> None:
    """Sign a user out of the web UI everywhere: every session of theirs ends at once, copies of
    its cookie included. Their password and API tokens keep working (`tokens revoke` ends a token)."""
    from modelrunner.auth import accounts

    with _accounts(_StoreOptions(database_url, workspace, data_dir, profile)) as session:
        ended = accounts.sign_out_everywhere(session, name)
    output.stdout().print(output.cell(f"signed user '{name}' out of {ended} web session{'' if ended == 1 else 's'}"))


def _set_disabled(name: str, disabled: bool, where: _StoreOptions) -> None:
    from modelrunner.auth import accounts

    with _accounts(where) as session:
        before = accounts.user(session, name).disabled
        accounts.set_disabled(session, name, disabled)
    state = "disabled" if disabled else "enabled"
    if before == disabled:
        output.stdout().print(output.cell(f"user '{name}' was {state} already"))
    elif disabled:
        output.stdout().print(
            output.cell(f"disabled user '{name}': their tokens, password and web sessions no longer work")
        )
    else:
        output.stdout().print(output.cell(f"enabled user '{name}'"))


# --- groups -------------------------------------------------------------------------------------


@groups_app.command("add")
def add_group(
    name: GroupName,
    database_url: options.DatabaseUrl = None,
    workspace: options.WorkspaceFolder = None,
    data_dir: options.DataDir = None,
    profile: options.Profile = None,
) -> None:
    """Add a group; grant it models under `access: groups:` in modelrunner.yaml."""
    from modelrunner.auth import accounts

    with _accounts(_StoreOptions(database_url, workspace, data_dir, profile)) as session:
        accounts.add_group(session, name)
    output.stdout().print(output.cell(f"added group '{name}'"))
    output.hint(f"add people with: modelrunner groups add-member {name} USER")


@groups_app.command("list")
def list_groups(
    json_output: options.Json = False,
    database_url: options.DatabaseUrl = None,
    workspace: options.WorkspaceFolder = None,
    data_dir: options.DataDir = None,
    profile: options.Profile = None,
) -> None:
    """List the groups with their members."""
    from modelrunner.auth import accounts

    with _accounts(_StoreOptions(database_url, workspace, data_dir, profile)) as session:
        groups = accounts.list_groups(session)
    if json_output:
        output.print_json([_plain(group) for group in groups])
        return
    table = output.table("group", "members", "created")
    for group in groups:
        table.add_row(output.cell(group.name), output.cell(", ".join(group.members)), _local(group.created_at))
    output.stdout().print(table)
    if not groups:
        output.hint("no groups yet (add one with `modelrunner groups add NAME`)")


@groups_app.command("add-member")
def add_member(
    group: GroupName,
    user: UserName,
    database_url: options.DatabaseUrl = None,
    workspace: options.WorkspaceFolder = None,
    data_dir: options.DataDir = None,
    profile: options.Profile = None,
) -> None:
    """Put a user in a group (nothing happens if they are in it already)."""
    from modelrunner.auth import accounts

    with _accounts(_StoreOptions(database_url, workspace, data_dir, profile)) as session:
        added = accounts.add_member(session, group, user)
    shown = f"added '{user}' to group '{group}'" if added else f"'{user}' is in group '{group}' already"
    output.stdout().print(output.cell(shown))


@groups_app.command("remove-member")
def remove_member(
    group: GroupName,
    user: UserName,
    database_url: options.DatabaseUrl = None,
    workspace: options.WorkspaceFolder = None,
    data_dir: options.DataDir = None,
    profile: options.Profile = None,
) -> None:
    """Take a user out of a group (nothing happens if they are not in it)."""
    from modelrunner.auth import accounts

    with _accounts(_StoreOptions(database_url, workspace, data_dir, profile)) as session:
        removed = accounts.remove_member(session, group, user)
    shown = f"removed '{user}' from group '{group}'" if removed else f"'{user}' is not in group '{group}'"
    output.stdout().print(output.cell(shown))


# --- tokens -------------------------------------------------------------------------------------


def _check_expires(value: str | None) -> str | None:
    """Typer callback for ``--expires``: a positive duration (a usage error otherwise)."""
    if value is not None:
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise typer.BadParameter(f"{value!r} is not valid; {HINT}") from None
        if seconds <= 0:
            raise typer.BadParameter("a token must live for a positive duration, e.g. 30d")
    return value


@tokens_app.command("create")
def create_token(
    user: Annotated[
        str, typer.Option("--user", "-u", envvar="MODELRUNNER_USER", help="Whose token.", show_default=False)
    ],
    expires: Annotated[
        str | None,
        typer.Option(
            envvar="MODELRUNNER_EXPIRES",
            callback=_check_expires,
            metavar="DURATION",
            help="Stop working after this long: seconds or a duration such as 12h, 30d. [default: never]",
        ),
    ] = None,
    label: Annotated[
        str,
        typer.Option(envvar="MODELRUNNER_LABEL", help="What the token is for, shown by `tokens list`."),
    ] = "",
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            "-q",
            envvar="MODELRUNNER_QUIET",
            help="Print only the token, e.g. for export MODELRUNNER_TOKEN=$(modelrunner tokens create ... -q).",
        ),
    ] = False,
    database_url: options.DatabaseUrl = None,
    workspace: options.WorkspaceFolder = None,
    data_dir: options.DataDir = None,
    profile: options.Profile = None,
) -> None:
    """Create an API token for a user and print it. It is shown this once: only its sha256 digest
    is stored."""
    from modelrunner.auth import accounts

    expires_in = parse_duration(expires) if expires is not None else None
    with _accounts(_StoreOptions(database_url, workspace, data_dir, profile)) as session:
        created = accounts.create_token(session, user, expires_in=expires_in, label=label)
    if quiet:
        sys.stdout.write(created.token + "\n")
        sys.stdout.flush()
        return
    row = created.row
    until = f"expires {_local(row.expires_at)}" if row.expires_at else "does not expire"
    console = output.stdout()
    console.print(output.cell(f"token {row.id} of user '{user}' ({until}):"), soft_wrap=True)
    console.print(output.cell(created.token), soft_wrap=True)
    console.print(
        output.cell(
            "Keep it now: it cannot be shown again (only its digest is stored). "
            "The CLI reads it from MODELRUNNER_TOKEN; HTTP clients send `Authorization: Bearer <token>`. "
            f"Revoke it with `modelrunner tokens revoke {row.id}`."
        ),
        soft_wrap=True,
    )


@tokens_app.command("list")
def list_tokens(
    user: Annotated[
        str | None, typer.Option("--user", "-u", envvar="MODELRUNNER_USER", help="Only this user's tokens.")
    ] = None,
    json_output: options.Json = False,
    database_url: options.DatabaseUrl = None,
    workspace: options.WorkspaceFolder = None,
    data_dir: options.DataDir = None,
    profile: options.Profile = None,
) -> None:
    """List tokens, oldest first: id, user, label, state and times (never a secret: those are not stored)."""
    from modelrunner.auth import accounts

    with _accounts(_StoreOptions(database_url, workspace, data_dir, profile)) as session:
        tokens = accounts.list_tokens(session, user)
    if json_output:
        output.print_json([_plain(token) for token in tokens])
        return
    table = output.table("id", "user", "label", "state", "created", "expires", "revoked")
    for token in tokens:
        table.add_row(
            str(token.id),
            output.cell(token.user),
            output.cell(token.label),
            token.state.value,
            _local(token.created_at),
            _local(token.expires_at) if token.expires_at else "never",
            _local(token.revoked_at),
        )
    output.stdout().print(table)
    if not tokens:
        output.hint("no tokens (create one with `modelrunner tokens create --user NAME`)")


@tokens_app.command("revoke")
def revoke_token(
    token_id: Annotated[int, typer.Argument(help="The token's id (as `tokens list` shows it).", min=1, max=INT64_MAX)],
    database_url: options.DatabaseUrl = None,
    workspace: options.WorkspaceFolder = None,
    data_dir: options.DataDir = None,
    profile: options.Profile = None,
) -> None:
    """Revoke a token: it stops working at once, for good."""
    from modelrunner.auth import accounts

    with _accounts(_StoreOptions(database_url, workspace, data_dir, profile)) as session:
        revoked = accounts.revoke_token(session, token_id)
    shown = f"token {token_id} of user '{revoked.user}'"
    if revoked.now:
        output.stdout().print(output.cell(f"revoked {shown}"))
    else:
        output.stdout().print(output.cell(f"{shown} was revoked already, at {_local(revoked.row.revoked_at)}"))


# --- plumbing -----------------------------------------------------------------------------------


def _read_password() -> str:
    if sys.stdin.isatty():
        password: str = typer.prompt("password", hide_input=True, confirmation_prompt=True, err=True)
    else:
        password = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    if not password:
        raise ModelrunnerError("--password-stdin read an empty password")
    return password


def _plain(value: Any) -> dict[str, Any]:
    """A listed account as JSON-ready values (times in ISO 8601 UTC, tuples as lists)."""
    return {
        key: item.isoformat() if isinstance(item, dt.datetime) else list(item) if isinstance(item, tuple) else item
        for key, item in dataclasses.asdict(value).items()
    }


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _local(value: dt.datetime | None) -> str:
    return output.when(value.isoformat()) if value else ""
