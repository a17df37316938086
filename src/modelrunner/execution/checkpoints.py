"""Where a run's checkpoints live, and when they go.

A model writes what it wants its next attempt to start from into ``MODELRUNNER_CHECKPOINT``.
The local backend gives every attempt of a run the same folder in the server's state folder. A
remote attempt (``modelrunner exec``) stores its folder in the artifact store under its own
attempt's key when it does not succeed, and the run's next attempt, wherever it runs, starts from
the newest complete one.

A checkpoint is for the run's next attempt, so it goes once the run can have none: the attempt
that ends the run drops it at once (``RUN_IS_OVER``); after any other ending (failed, preempted,
lost, stopped by a server shutting down) the run may be tried again, and what is left once the
run ends anyway is removed by the engine's sweep (``engine/checkpoint_sweep.py``, ``discard``).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable
from pathlib import Path

from modelrunner.artifacts.keys import resolve_under
from modelrunner.artifacts.store import ArtifactStore
from modelrunner.engine.states import AttemptStatus
from modelrunner.execution.job import AttemptJob

log = logging.getLogger("modelrunner.checkpoints")

# Attempt endings after which the run is over: its checkpoint has no further use.
RUN_IS_OVER = frozenset({AttemptStatus.SUCCEEDED, AttemptStatus.CANCELLED, AttemptStatus.TIMED_OUT})

_COMPLETE = ".modelrunner-complete"  # written last: a checkpoint cut short is never used


def local_folder(state_dir: Path, run_id: int) -> Path:
    """The checkpoint folder every local attempt of ``run_id`` shares."""
    return Path(resolve_under(state_dir / "checkpoints", str(run_id)))


def stored_key(run_id: int, attempt_number: int) -> str:
    """Where a remote attempt that did not succeed leaves its checkpoint in the artifact store."""
    return f"runs/{run_id}/attempts/{attempt_number}/checkpoint"


def restore(artifacts: ArtifactStore, job: AttemptJob, destination: Path) -> int | None:
    """The newest complete checkpoint an earlier attempt of the run left, copied to
    ``destination``; that attempt's number, or None."""
    for earlier in range(job.attempt_number - 1, 0, -1):
        prefix = stored_key(job.run_id, earlier)
        if artifacts.exists(f"{prefix}/{_COMPLETE}"):
            artifacts.get_folder(prefix, destination)
            (destination / _COMPLETE).unlink(missing_ok=True)
            return earlier
    return None


def keep(artifacts: ArtifactStore, job: AttemptJob, folder: Path) -> None:
    """Store what the attempt left in ``folder`` for the run's next attempt (nothing if empty)."""
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    prefix = stored_key(job.run_id, job.attempt_number)
    try:
        artifacts.put_folder(folder, prefix)
        artifacts.put_bytes(f"{prefix}/{_COMPLETE}", b"")
    except Exception as exc:  # the next attempt starts afresh
        log.warning("attempt %s: its checkpoint could not be stored: %s", job.attempt_id, exc)


def discard(artifacts: ArtifactStore, state_dir: Path, run_id: int, attempt_numbers: Iterable[int]) -> None:
    """Remove every checkpoint of an ended run: its local folder and what the given attempts
    stored. Removing what is not there is no error, so a sweep can be repeated."""
    shutil.rmtree(local_folder(state_dir, run_id), ignore_errors=True)
    for number in attempt_numbers:
        artifacts.remove(stored_key(run_id, number))
