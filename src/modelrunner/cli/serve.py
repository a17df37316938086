"""``modelrunner serve``: the whole platform in one process behind its HTTP API."""

from __future__ import annotations

import errno
import logging
import shlex
import socket
from typing import TYPE_CHECKING, Annotated

import typer

from modelrunner.cli import options, output
from modelrunner.cli.configuration import build_settings, masked_url
from modelrunner.errors import ModelrunnerError

if TYPE_CHECKING:
    from modelrunner.platform import Platform
    from modelrunner.settings import Settings


def serve(
    workspace: options.WorkspaceFolder = None,
    host: Annotated[
        str | None,
        typer.Option(envvar="MODELRUNNER_HOST", help="Address to listen on. [default: 127.0.0.1]"),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(envvar="MODELRUNNER_PORT", min=1, max=65535, help="Port to listen on. [default: 8000]"),
    ] = None,
    slots: Annotated[
        int | None,
        typer.Option(
            envvar="MODELRUNNER_LOCAL_SLOTS",
            min=1,
            help="CPU slots of the local backend: how many model CPUs run at once. [default: the CPU count]",
        ),
    ] = None,
    database_url: options.DatabaseUrl = None,
    artifacts_url: Annotated[
        str | None,
        typer.Option(
            envvar="MODELRUNNER_ARTIFACTS_URL",
            help="fsspec URL of the artifact store, e.g. s3://bucket/prefix. [default: `DATA_DIR/artifacts`]",
        ),
    ] = None,
    data_dir: options.DataDir = None,
    profile: options.Profile = None,
    log_level: options.LogLevelOption = None,
    log_format: options.LogFormatOption = None,
) -> None:
    """Run the platform: the HTTP API, the web UI, the dispatcher and the local backend, in one process.

    Database migrations are applied at start. Stop it with Ctrl-C; runs in flight are picked up
    again when it restarts. What it does is logged on stderr (text, or JSON lines with
    --log-format json), requests included.
    """
    settings = build_settings(
        workspace=workspace,
        host=host,
        port=port,
        local_slots=slots,
        database_url=database_url,
        artifacts_url=artifacts_url,
        data_dir=data_dir,
        profile=profile,
        log_level=log_level,
        log_format=log_format,
    )
    if not settings.workspace.is_dir():
        raise ModelrunnerError(
            f"the workspace folder {settings.workspace} does not exist; create one with "
            f"`modelrunner init {settings.workspace}` or point --workspace (MODELRUNNER_WORKSPACE) at one"
        )
    # The server's dependencies are slow to import; the other commands never need them.
    from modelrunner.api.http_server import serve_http
    from modelrunner.auth.accounts import FIRST_ADMIN
    from modelrunner.execution.confinement import protect_runner
    from modelrunner.platform import Platform
    from modelrunner.process_log import LogFormat, configure

    configure(settings.log_level, settings.log_format)
    protect_runner()
    _check_port_free(settings.host, settings.port)
    given = settings
    platform = Platform(settings)
    settings = platform.settings  # with the profile's values
    platform.database.ping()  # an unreachable database is a message here, not a startup traceback
    created_first_admin, admin_needs_password = _prepare_store(platform)
    shown_host = f"[{settings.host}]" if ":" in settings.host else settings.host
    address = settings.resolved_public_url  # 0.0.0.0 is no address a browser can open
    lines = [
        f"modelrunner listening on http://{shown_host}:{settings.port} "
        f"(workspace {settings.workspace.resolve()}, database {masked_url(settings.resolved_database_url)}, "
        f"artifacts {settings.resolved_artifacts_url}"
        + (f", profile {settings.profile}" if settings.profile else "")
        + ")",
        f"  web UI:   {address}/",
        f"  API docs: {address}/docs",
    ]
    if created_first_admin:
        command = _store_command(given, ["tokens", "create", "--user", FIRST_ADMIN])
        lines.append(f"created the first site admin '{FIRST_ADMIN}'. Create its token with: {command}")
    if admin_needs_password:
        command = _store_command(given, ["users", "set-password", FIRST_ADMIN])
        lines.append(f"'{FIRST_ADMIN}' has no password for the web UI yet; give it one with: {command}")
    if settings.log_format == LogFormat.JSON:
        # A log system reading the container's output takes every line as JSON: the banner too.
        for line in lines:
            logging.getLogger("modelrunner.serve").info(line.strip())
    else:
        for line in lines:
            output.stdout().print(line, markup=False, soft_wrap=True)
    serve_http(platform, settings.host, settings.port)


def _prepare_store(platform: Platform) -> tuple[bool, bool]:
    """Migrate the store and create the first site admin (see Platform.prepare_store); whether it
    was created now, and whether it has no password to sign in to the web UI with. Database
    failures become a message naming the database."""
    from sqlalchemy.exc import SQLAlchemyError

    from modelrunner.auth.accounts import FIRST_ADMIN, lacks_password

    try:
        created = platform.prepare_store()
        with platform.database.read() as session:
            return created, lacks_password(session, FIRST_ADMIN)
    except SQLAlchemyError as exc:
        shown = masked_url(platform.settings.resolved_database_url)
        raise ModelrunnerError(f"cannot prepare the database {shown}: {getattr(exc, 'orig', None) or exc}") from exc


def _store_command(given: Settings, command: list[str]) -> str:
    """``modelrunner COMMAND...`` with the flags that find this server's store from any folder
    (never a secret: a database password shows as ***)."""
    words = ["modelrunner", *command, "--workspace", str(given.workspace.resolve())]
    if given.profile:
        words += ["--profile", given.profile]
    if given.database_url:
        words += ["--database-url", masked_url(given.database_url)]
    elif given.data_dir:
        words += ["--data-dir", str(given.state_dir)]
    line = shlex.join(words)
    if "***" in line:
        line += " (with the database password in place of ***)"
    return line


def _check_port_free(host: str, port: int) -> None:
    """Fail with a message before the platform starts if the address is taken (uvicorn would only
    find out after starting the dispatcher)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            taken = exc.errno == errno.EADDRINUSE
            hint = " (is another `modelrunner serve` running? choose another --port)" if taken else ""
            raise ModelrunnerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from exc
