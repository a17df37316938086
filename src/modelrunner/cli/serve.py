"""``modelrunner serve``: the whole platform in one process behind its HTTP API."""

from __future__ import annotations

import errno
import socket
from typing import Annotated

import typer

from modelrunner.cli import options, output
from modelrunner.cli.configuration import build_settings, masked_url
from modelrunner.errors import ModelrunnerError


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
) -> None:
    """Run the platform: the HTTP API, the dispatcher and the local backend, in one process.

    Database migrations are applied at start. Stop it with Ctrl-C; runs in flight are picked up
    again when it restarts.
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
    )
    if not settings.workspace.is_dir():
        raise ModelrunnerError(
            f"the workspace folder {settings.workspace} does not exist; create one with "
            f"`modelrunner init {settings.workspace}` or point --workspace (MODELRUNNER_WORKSPACE) at one"
        )
    # The server's dependencies are slow to import; the other commands never need them.
    import uvicorn

    from modelrunner.api.app import create_app
    from modelrunner.platform import Platform

    _check_port_free(settings.host, settings.port)
    platform = Platform(settings)
    settings = platform.settings  # with the profile's values
    platform.database.ping()  # an unreachable database is a message here, not a startup traceback
    shown_host = f"[{settings.host}]" if ":" in settings.host else settings.host
    output.stdout().print(
        f"modelrunner listening on http://{shown_host}:{settings.port} "
        f"(workspace {settings.workspace.resolve()}, database {masked_url(settings.resolved_database_url)}, "
        f"artifacts {settings.resolved_artifacts_url}"
        + (f", profile {settings.profile}" if settings.profile else "")
        + ")",
        markup=False,
        soft_wrap=True,
    )
    uvicorn.run(create_app(platform), host=settings.host, port=settings.port, log_level="info")


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
