"""``modelrunner worker``: serve a worker pool of a modelrunner server from this machine."""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from modelrunner.cli.options import DEFAULT, LogFormatOption, LogLevelOption, Server
from modelrunner.errors import ModelrunnerError
from modelrunner.process_log import LogFormat, LogLevel, configure


def worker(
    pool: Annotated[
        str,
        typer.Option("--pool", envvar="MODELRUNNER_POOL", help="The pool to serve: a backend of `type: worker`."),
    ],
    server: Server = DEFAULT,
    token: Annotated[
        str,
        typer.Option(
            "--token",
            envvar="MODELRUNNER_TOKEN",
            help="API token of a site admin or of a member of the group `workers`.",
            show_default=False,
        ),
    ] = "",
    slots: Annotated[
        int, typer.Option("--slots", envvar="MODELRUNNER_SLOTS", min=1, help="How many attempts run at once here.")
    ] = 1,
    workdir: Annotated[
        Path | None,
        typer.Option(
            "--workdir",
            envvar="MODELRUNNER_WORKDIR",
            file_okay=False,
            help="Where attempts' scratch folders go. [default: the system's temporary folder]",
        ),
    ] = None,
    run_as: Annotated[
        str | None,
        typer.Option(
            "--run-as",
            envvar="MODELRUNNER_RUN_AS",
            help="Run models as this unprivileged user (the worker must run as root). "
            "[default: `modelrunner-models` for a worker running as root, where that user exists]",
            show_default=False,
        ),
    ] = None,
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """Run attempts of a worker pool: claim them from the server over HTTP, run each under the
    model contract, and send back heartbeats, logs, progress, outputs and the outcome.

    Needs only the server's URL and a token: model snapshots, inputs and outputs travel through
    the server. While the server cannot be reached, the models keep running and the worker keeps
    trying; an attempt whose lease expired meanwhile is stopped and its result dropped (it ran
    again elsewhere). SIGTERM or Ctrl-C stops claiming and stops the running models; their runs
    are queued again. Exits 0 when stopped, 1 when the server refuses the worker.
    """
    from modelrunner.execution.confinement import check_reachable, model_user, protect_runner
    from modelrunner.execution.worker import Worker, WorkerConfig

    if not token.strip():
        raise ModelrunnerError("a worker needs a token: pass --token or set MODELRUNNER_TOKEN")
    configure(log_level or LogLevel.INFO, log_format or LogFormat.TEXT)
    protect_runner()
    if workdir is not None:
        try:
            workdir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ModelrunnerError(f"cannot use {workdir} as the workdir: {exc.strerror or exc}") from exc
    user = model_user(run_as, allow_root=True)
    if user is not None:
        check_reachable(user, workdir or Path(tempfile.gettempdir()), "--workdir")
    config = WorkerConfig(server=server, token=token.strip(), pool=pool, slots=slots, workdir=workdir, user=user)
    running = Worker(config)

    def stop(signum: int, frame: FrameType | None) -> None:
        running.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    running.run()
