"""One attempt of a model form, timed in the benchmark process: what the form figures (R,
notebooks, images) hold against the same code started by hand."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from modelrunner.execution.job import AttemptJob
from modelrunner.execution.process import AttemptProcess

PARAMS = {"n": 21}  # every form's model writes doubled.txt from it


def bench_job(**form: Any) -> AttemptJob:
    """The attempt of a benchmark model in ``form`` (``command``, ``notebook``, ``image``)."""
    return AttemptJob(
        run_id=1,
        attempt_id=1,
        attempt_number=1,
        model_name="bench_model",
        model_version="bench",
        params=PARAMS,
        snapshot_uri="",
        **{"command": [], **form},
    )


def timed_attempt(process: AttemptProcess, folder: Path) -> float:
    """Seconds ``process`` takes to run to its end; it must succeed (its log says why not)."""
    folder.mkdir(parents=True)
    started = time.perf_counter()
    outcome = process.run(lambda pid: None, lambda fraction, message: None, lambda outputs: [])
    took = time.perf_counter() - started
    assert outcome.status.value == "succeeded", (outcome, (folder / "attempt.log").read_text())
    return took
