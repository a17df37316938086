"""The container engine's command line (podman or docker) that image models are resolved and run
with: the one place that finds it and calls it."""

from __future__ import annotations

import shutil
import subprocess

from modelrunner.errors import Conflict, ModelrunnerError

ENGINES = ("podman", "docker")
# An engine's answer to an inspect or a stop comes in well under this; a hung engine must not
# hold a submit or an attempt's thread forever.
_CALL_SECONDS = 60.0


class ContainerEngineMissing(Conflict):
    """Neither podman nor docker (or not the one named) is installed: the machine's state, not the
    request, is what keeps an image model from being resolved or run."""


def container_cli(named: str | None = None) -> str:
    """The path of ``named`` (podman or docker), or of the first of them installed."""
    for program in (named,) if named else ENGINES:
        found = shutil.which(program)
        if found is not None:
            return found
    wanted = named or " or ".join(ENGINES)
    raise ContainerEngineMissing(f"image models need {wanted}, which is not installed on this machine")


def call(cli: str, *arguments: str, timeout: float = _CALL_SECONDS) -> subprocess.CompletedProcess[str]:
    """Run ``cli arguments``; its result whatever its exit status (ModelrunnerError when it hangs
    or cannot be started)."""
    try:
        return subprocess.run(
            [cli, *arguments], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise ModelrunnerError(f"{cli} {arguments[0]} did not answer in {timeout:g} s") from exc
    except OSError as exc:
        raise ModelrunnerError(f"cannot start {cli}: {exc.strerror or exc}") from exc


def last_line(text: str) -> str:
    """The engine's own message: the last line of its stderr that is not a warning about its
    configuration (podman warns about unused network plugins on every call)."""
    lines = [line for line in text.strip().splitlines() if line.strip() and "level=warning" not in line]
    return lines[-1].removeprefix("Error: ") if lines else ""
