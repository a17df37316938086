"""The model forms (a command, a notebook, an image) as the one command an attempt starts.

Every form keeps the model contract (params file, inputs, outputs, checkpoint, progress lines);
a form only decides what is started in the model folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

from modelrunner.errors import ModelrunnerError
from modelrunner.execution.environments import Environment
from modelrunner.execution.job import AttemptJob
from modelrunner.spec.model_spec import PYTHON_PROGRAMS

# Run as a file: a model's own environment has papermill but not modelrunner (see the runner).
NOTEBOOK_RUNNER = Path(__file__).with_name("notebook_runner.py")


def launch_command(job: AttemptJob, environment: Environment | None = None) -> list[str]:
    """The command that starts this attempt's model in its model folder (in ``environment``,
    the model's own, when it names one)."""
    if job.notebook is not None:
        # The runner reads the contract's variables and runs the notebook with papermill, under
        # the interpreter `python` means here, so its kernel has the model's packages.
        own = ["--environment", environment.file] if environment is not None and environment.python else []
        return resolve_command(["python", str(NOTEBOOK_RUNNER), *own, job.notebook], environment)
    if not job.command:
        if job.image is not None:
            raise ModelrunnerError(
                f"this backend cannot start a model given as an image ({job.image}): image models run on a "
                "`container` backend (`type: container` in modelrunner.yaml's backends)"
            )
        raise ModelrunnerError("this backend cannot start a model given as no command")
    return resolve_command(job.command, environment)


def resolve_command(command: list[str], environment: Environment | None = None) -> list[str]:
    """``python`` means the interpreter of the model's environment when it has one (a Python
    or conda environment), else the one modelrunner runs under, so models see its packages."""
    python = environment.python if environment is not None else None
    program = (python or sys.executable) if command[0] in PYTHON_PROGRAMS else command[0]
    return [program, *command[1:]]
