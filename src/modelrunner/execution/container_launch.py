"""An image model's attempt as the container engine's ``run`` command: the model contract's
folders mounted at fixed paths inside the container, its variables naming those paths, the
attempt's resources as the container's limits.

The command's environment carries the variables' values (``--env NAME`` passes a value from it),
so none of them, a callback token least of all, is ever on a command line."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from modelrunner.errors import ModelrunnerError
from modelrunner.execution.failure_note import FAILURE_NOTE, NOTE_FILE
from modelrunner.execution.job import AttemptJob

INSIDE = "/modelrunner"  # where the contract's folders appear inside the container
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T)?\s*$")
_BYTES = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "M": 10**6, "G": 10**9}
_BYTES["T"] = 10**12
# What the engine's client needs of the runner's environment to find its configuration and
# storage; nothing else of the runner's (its secrets) reaches even the client.
_CLIENT_VARIABLES = frozenset({"PATH", "HOME", "USER", "LANG", "TMPDIR", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME"})
_CLIENT_PREFIXES = ("CONTAINERS_", "DOCKER_", "REGISTRY_AUTH_FILE", "LC_")


@dataclass(frozen=True)
class ContainerRun:
    """How a container backend runs its containers."""

    cli: str  # the engine's program: podman or docker
    network: str  # none, host, or a network of the engine
    user: tuple[int, int] | None  # (uid, gid) inside the container; None: the engine's default
    labels: Mapping[str, str]  # what tells this installation's containers from others'

    @property
    def podman(self) -> bool:
        return Path(self.cli).name == "podman"


def memory_bytes(memory: str) -> int:
    """``512Mi``, ``8Gi``, ``2G`` (or bytes) in bytes, as the engine's ``--memory`` takes them."""
    match = _MEMORY.match(memory)
    if match is None:
        raise ModelrunnerError(f"memory {memory!r} is not a size like 512Mi or 8Gi")
    return max(1, math.ceil(float(match.group(1)) * _BYTES[match.group(2)]))


def container_command(
    run: ContainerRun, job: AttemptJob, name: str, scratch: Path, checkpoint: Path, passed: Mapping[str, str]
) -> tuple[list[str], dict[str, str]]:
    """The engine's command that runs ``job``'s image as container ``name`` to its end (attached:
    its output is the model's), and that command's environment. ``scratch`` holds the attempt's
    folders as the local backend prepares them (params.json, inputs, outputs, and the model
    folder, read-only at /modelrunner/model: files next to model.yaml a model may read) and the
    file of the model's failure note, which must exist; ``passed`` are the values of the
    variables the workspace passes to models."""
    if job.image is None:
        raise ModelrunnerError(
            f"model '{job.model_name}' is not an image model: a container backend runs models given as `image:` "
            "in model.yaml (run this one on a local backend)"
        )
    variables = {
        "MODELRUNNER_PARAMS": f"{INSIDE}/params.json",
        "MODELRUNNER_INPUTS": f"{INSIDE}/inputs",
        "MODELRUNNER_OUTPUTS": f"{INSIDE}/outputs",
        "MODELRUNNER_CHECKPOINT": f"{INSIDE}/checkpoint",
        FAILURE_NOTE: f"{INSIDE}/{NOTE_FILE}",
        "MODELRUNNER_RUN_ID": str(job.run_id),
        "MODELRUNNER_ATTEMPT": str(job.attempt_number),
        "PYTHONUNBUFFERED": "1",  # progress lines must arrive while the model runs
    }
    if job.item is not None:
        variables["MODELRUNNER_ITEM"] = job.item
    variables.update({key: value for key, value in passed.items() if key not in variables})
    command = [
        # --rm: the engine removes the container once it has ended; a stopped attempt removes it too.
        run.cli, "run", "--rm", "--name", name, "--init", "--network", run.network,
        # A model is untrusted code: no capabilities, and nothing it runs gains privileges.
        "--cap-drop", "all", "--security-opt", "no-new-privileges",
        "--volume", f"{scratch / 'params.json'}:{INSIDE}/params.json:ro",
        "--volume", f"{scratch / 'model'}:{INSIDE}/model:ro",
        "--volume", f"{scratch / 'inputs'}:{INSIDE}/inputs",
        "--volume", f"{scratch / 'outputs'}:{INSIDE}/outputs",
        "--volume", f"{checkpoint}:{INSIDE}/checkpoint",
        "--volume", f"{scratch / NOTE_FILE}:{INSIDE}/{NOTE_FILE}",
    ]  # fmt: skip
    for key, value in sorted(run.labels.items()):
        command += ["--label", f"{key}={value}"]
    if run.user is not None:
        command += ["--user", f"{run.user[0]}:{run.user[1]}"]
    elif run.podman and os.geteuid() != 0:
        command += ["--userns", "keep-id"]  # rootless: the model writes the folders as their owner
    if job.resources.memory is not None:
        limit = str(memory_bytes(job.resources.memory))
        command += ["--memory", limit, "--memory-swap", limit]  # no swap beyond the limit
    if job.resources.cpu is not None:
        command += ["--cpus", f"{job.resources.cpu:g}"]
    for key in sorted(variables):
        command += ["--env", key]
    command += [job.image, *job.command]
    return command, {**variables, **_client_environment()}


def _client_environment() -> dict[str, str]:
    return {
        key: value for key, value in os.environ.items() if key in _CLIENT_VARIABLES or key.startswith(_CLIENT_PREFIXES)
    }
