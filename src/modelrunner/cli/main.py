"""The ``modelrunner`` command: the commands, and the one place where errors become messages."""

from __future__ import annotations

import sys
from typing import Any

import typer

import modelrunner
from modelrunner.cli import output
from modelrunner.cli.accounts_commands import groups_app, tokens_app, users_app
from modelrunner.cli.backends_commands import backends_app
from modelrunner.cli.data_commands import data_app
from modelrunner.cli.db_commands import db_app
from modelrunner.cli.exec_command import exec_job
from modelrunner.cli.export_commands import export_app
from modelrunner.cli.models_commands import models_app
from modelrunner.cli.notify_commands import deliveries_app, subscriptions_app
from modelrunner.cli.r_helper_command import r_helper_app
from modelrunner.cli.run_command import run
from modelrunner.cli.runs_commands import runs_app
from modelrunner.cli.schedules_commands import schedules_app, triggers_app
from modelrunner.cli.secrets_commands import secrets_app
from modelrunner.cli.serve import serve
from modelrunner.cli.worker_command import worker
from modelrunner.cli.workspace_commands import check, init
from modelrunner.errors import ModelrunnerError
from modelrunner.extras import missing_extra


class _CommandLine(typer.Typer):
    """A Typer app that never shows a traceback: a domain error prints its message and exits 1, as does
    a library missing because its extra is not installed (naming the extra)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except ModelrunnerError as exc:
            output.error(exc.message)
            sys.exit(1)
        except Exception as exc:  # a missing extra, or else a bug in modelrunner: say so plainly, no traceback
            missing = missing_extra(exc)
            if missing is not None:
                output.error(missing.message)
            else:
                output.error(f"unexpected {type(exc).__name__}: {exc} (this is a bug in modelrunner; please report it)")
            sys.exit(1)


app = _CommandLine(
    name="modelrunner",
    help=(
        "Run scientific models on demand: typed parameters, progress, outputs, and never the same "
        "computation twice.\n\n"
        "Start the platform with `modelrunner serve` in a workspace (create one with "
        "`modelrunner init DIR`), then submit runs with `modelrunner run MODEL -p name=value --wait`. "
        "Every option can also be set with an environment variable `MODELRUNNER_<OPTION>`."
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"modelrunner {modelrunner.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Run scientific models on demand."""


app.command("serve")(serve)
app.command("init")(init)
app.command("check")(check)
app.command("run")(run)
app.command("exec")(exec_job)
app.command("worker")(worker)
app.add_typer(runs_app, name="runs")
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")
app.add_typer(schedules_app, name="schedules")
app.add_typer(backends_app, name="backends")
app.add_typer(triggers_app, name="triggers")
app.add_typer(db_app, name="db")
app.add_typer(export_app, name="export")
app.add_typer(users_app, name="users")
app.add_typer(groups_app, name="groups")
app.add_typer(tokens_app, name="tokens")
app.add_typer(secrets_app, name="secrets")
app.add_typer(subscriptions_app, name="subscriptions")
app.add_typer(deliveries_app, name="deliveries")
app.add_typer(r_helper_app, name="r-helper")
