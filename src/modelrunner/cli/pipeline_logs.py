"""``modelrunner runs logs PIPELINE_RUN``: a pipeline run has no log of its own (its steps run
the models), so its logs are its step runs': the failing steps' when some failed, else each
step's, each under a header naming the step, its item and its run."""

from __future__ import annotations

import sys
import time
from typing import Any

from modelrunner.cli import output
from modelrunner.cli.client import Client
from modelrunner.cli.run_view import FINAL

_FAILING = frozenset({"failed", "timed_out"})
_MAX_STEP_RUNS = 500  # the API's page limit; a larger fan-out shows its newest 500
_WAIT_SECONDS = 0.5


def print_pipeline_logs(client: Client, run: dict[str, Any], *, every_step: bool, follow: bool) -> None:
    """Print the logs of ``run``'s steps on stdout (see the module); with ``follow``, once the
    pipeline has ended."""
    if follow and run["status"] not in FINAL:
        output.hint(f"run {run['id']} is a pipeline: its steps' logs are printed when it ends")
        while run["status"] not in FINAL:
            time.sleep(_WAIT_SECONDS)
            run = client.run(run["id"])
    computed = run["source_run_id"] if run.get("cache_hit") and run.get("source_run_id") is not None else run["id"]
    if computed != run["id"]:
        output.hint(f"run {run['id']} was answered from the cache; these are the steps of run {computed}")
    steps = list(reversed(client.runs(_MAX_STEP_RUNS, parent=computed)))  # in the order they were created
    failing = [step for step in steps if step["status"] in _FAILING]
    shown = steps if every_step or not failing else failing
    if failing and not every_step:
        names = ", ".join(_name(step) for step in failing)
        output.hint(f"showing the log of the failing step(s) {names}; --all-steps shows every step's")
    if not steps:
        output.hint(f"pipeline run {computed} has no step runs yet")
    for step in shown:
        sys.stdout.write(f"==> step {_name(step)} (run {step['id']}, {step['status']}) <==\n")
        sys.stdout.flush()
        ended_with_newline = _copy_log(client, step["id"])
        if not ended_with_newline:
            sys.stdout.write("\n")
    sys.stdout.flush()


def _name(step: dict[str, Any]) -> str:
    return str(step["step"]) + (f"[{step['item_key']}]" if step.get("item_key") is not None else "")


def _copy_log(client: Client, run_id: int) -> bool:
    """Write the whole log of ``run_id`` to stdout; whether it was empty or ended with a newline."""
    offset, last = 0, b"\n"
    while True:
        chunk = client.logs(run_id, offset)
        if chunk.data:
            sys.stdout.buffer.write(chunk.data)
            last = chunk.data[-1:]
        offset = chunk.next_offset
        if offset >= chunk.size or not chunk.data:
            sys.stdout.buffer.flush()
            return last == b"\n"
