"""The model forms (a command, a notebook, an image) as the one command an attempt starts.

Every form keeps the model contract (params file, inputs, outputs, checkpoint, progress lines);
a form only decides what is started in the model folder.
"""

from __future__ import annotations

import sys

from modelrunner.errors import ModelrunnerError
from modelrunner.execution.job import AttemptJob
from modelrunner.spec.model_spec import PYTHON_PROGRAMS


def launch_command(job: AttemptJob) -> list[str]:
    """The command that starts this attempt's model in its model folder."""
    if not job.command:
        form = "a notebook" if job.notebook is not None else "an image" if job.image is not None else "no command"
        raise ModelrunnerError(f"this backend cannot start a model given as {form}")
    return resolve_command(job.command)


def resolve_command(command: list[str]) -> list[str]:
    """``python`` means the interpreter modelrunner runs under, so models see its packages."""
    program = sys.executable if command[0] in PYTHON_PROGRAMS else command[0]
    return [program, *command[1:]]
