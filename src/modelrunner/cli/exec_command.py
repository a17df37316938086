"""``modelrunner exec``: run one attempt on this machine from a job description, as every
non-local backend does on its machines."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from modelrunner.cli import output
from modelrunner.errors import ModelrunnerError


def exec_job(
    job: Annotated[
        str,
        typer.Option(
            "--job",
            envvar="MODELRUNNER_JOB",
            help="The job description: a JSON file, `-` to read it from stdin, or the JSON itself.",
            show_default=False,
        ),
    ],
) -> None:
    """Run one attempt from its job description and print how it ended as JSON.

    The description holds the attempt (run, model snapshot, command, parameters, inputs), the
    artifact store's URL and the grace period; backends write it, people rarely do. The model
    snapshot and inputs come from the artifact store, outputs go to it, and progress is posted
    to the server's callback URL (best effort). SIGTERM (the attempt ends `preempted`) or Ctrl-C
    (`cancelled`) stops the model: SIGTERM to everything it started, SIGKILL after the grace period;
    then what it left in MODELRUNNER_CHECKPOINT is stored for the run's next attempt, which
    starts with it.

    Exits 0 whenever the attempt ran, whatever the model's result (see `status` in the JSON);
    1 only when the job cannot be read or run at all.
    """
    from modelrunner.engine.states import AttemptStatus
    from modelrunner.execution.confinement import protect_runner
    from modelrunner.execution.remote import RemoteAttempt, outcome_to_dict, parse_job

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="modelrunner exec: %(message)s")
    protect_runner()
    attempt = RemoteAttempt(parse_job(_read_job(job)))

    def stop(signum: int, frame: FrameType | None) -> None:
        # SIGTERM is how infrastructure takes a machine back (a spot interruption, an eviction):
        # preempted, retried on the lost/preempted budget. A backend that asked for the stop
        # itself records its own reason. Ctrl-C is a person's: cancelled.
        attempt.stop(AttemptStatus.PREEMPTED if signum == signal.SIGTERM else AttemptStatus.CANCELLED)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    outcome = attempt.run()
    output.print_json(outcome_to_dict(outcome))


def _read_job(job: str) -> str:
    if job == "-":
        return sys.stdin.read()
    if job.lstrip().startswith("{"):
        return job
    try:
        return Path(job).read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelrunnerError(f"cannot read the job description {job}: {exc.strerror or exc}") from exc
