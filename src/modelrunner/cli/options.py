"""Options several commands share; each has its ``MODELRUNNER_*`` environment variable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelrunner.cli.client import DEFAULT_SERVER
from modelrunner.process_log import LogFormat, LogLevel

Server = Annotated[
    str,
    typer.Option(
        "--server",
        envvar="MODELRUNNER_SERVER",
        help="URL of the modelrunner server to talk to.",
        show_default=True,
    ),
]
DEFAULT = DEFAULT_SERVER

Workspace = Annotated[
    Path,
    typer.Option(
        "--workspace",
        "-w",
        envvar="MODELRUNNER_WORKSPACE",
        help="Workspace folder (holds modelrunner.yaml and the model folders).",
        file_okay=False,
    ),
]

Json = Annotated[
    bool,
    typer.Option("--json", envvar="MODELRUNNER_JSON", help="Print the server's JSON instead of a table."),
]

# Settings that locate the state; None means "as Settings decides" (see modelrunner.settings).
WorkspaceFolder = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        envvar="MODELRUNNER_WORKSPACE",
        file_okay=False,
        help="Workspace folder with modelrunner.yaml and the models. [default: .]",
    ),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        envvar="MODELRUNNER_DATABASE_URL",
        help=(
            "SQLAlchemy URL of the store, e.g. postgresql://user@host/db (needs pip install "
            "'modelrunner[postgres]'). [default: a SQLite file in the data folder]"
        ),
    ),
]
DataDir = Annotated[
    Path | None,
    typer.Option(
        envvar="MODELRUNNER_DATA_DIR",
        file_okay=False,
        help="State folder for the SQLite file, logs and scratch space. [default: `WORKSPACE/.modelrunner`]",
    ),
]
SecretsKeyFile = Annotated[
    Path | None,
    typer.Option(
        envvar="MODELRUNNER_SECRETS_KEY_FILE",
        dir_okay=False,
        help="File with the keys that encrypt webhook secrets in the store (or MODELRUNNER_SECRETS_KEY holds "
        "them). [default: `DATA_DIR/secrets.key`]",
    ),
]
Profile = Annotated[
    str | None,
    typer.Option(
        "--profile",
        envvar="MODELRUNNER_PROFILE",
        help="A profile of modelrunner.yaml, e.g. test or production: storage, slots, whether publish steps "
        "and schedules run. Flags and MODELRUNNER_* variables still win.",
    ),
]

# The log of a long-running process (serve, worker); None means "as Settings decides".
LogLevelOption = Annotated[
    LogLevel | None,
    typer.Option(
        "--log-level",
        envvar="MODELRUNNER_LOG_LEVEL",
        case_sensitive=False,
        help="The least severe lines to log (on stderr). [default: info]",
        show_default=False,
    ),
]
LogFormatOption = Annotated[
    LogFormat | None,
    typer.Option(
        "--log-format",
        envvar="MODELRUNNER_LOG_FORMAT",
        case_sensitive=False,
        help="text: lines for people; json: one JSON object a line (time, level, logger, message, and the run, "
        "attempt, model and backend of a line about a run), for a log system. [default: text]",
        show_default=False,
    ),
]
