"""Retry decisions: whether a run whose attempt did not succeed gets another attempt.

A run has two budgets (``retries:`` of its model, or of its pipeline step, as recorded with its
model version): ``failed`` for attempts that failed by the model's fault, ``lost`` for attempts
lost or preempted through no fault of the model. Each decision looks the budget up itself from
the run's recorded version, so it holds for any attempt, whoever remembers it: a server started
after the attempt began decides as the one that launched it would have.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from modelrunner.engine.catalog import VersionCatalog
from modelrunner.engine.states import AttemptStatus, RunStatus
from modelrunner.errors import NotFound, SpecError
from modelrunner.spec.model_spec import Retries
from modelrunner.store import queries

# The attempt endings that ``retries.lost`` is spent on.
INTERRUPTED = (AttemptStatus.LOST.value, AttemptStatus.PREEMPTED.value)


@dataclass(frozen=True)
class Decision:
    """Where the run goes next: queued (another attempt) or failed, and why."""

    to: RunStatus
    reason: str | None


class RetryPolicy:
    """Decides on the budgets of the versions in ``catalog`` (versions are read from the store
    once and kept in memory, so a decision costs the count of earlier attempts and the run's
    version, both small reads on the run's own rows)."""

    def __init__(self, catalog: VersionCatalog) -> None:
        self._catalog = catalog

    def after_failure(self, session: Session, run_id: int, number: int, error: str | None) -> Decision:
        """Attempt ``number`` of the run failed by the model's fault (counted already)."""
        try:
            budget = self._budget(session, run_id)
        except (NotFound, SpecError) as exc:
            return _cannot_run_again(error, exc)
        failures = queries.count_attempts(session, run_id, [AttemptStatus.FAILED.value])
        if failures <= budget.failed:
            return Decision(RunStatus.QUEUED, f"attempt {number} failed ({error}); retry {failures} of {budget.failed}")
        return Decision(RunStatus.FAILED, error)

    def after_interruption(self, session: Session, run_id: int, status: RunStatus, reason: str) -> Decision:
        """The run's attempt was lost or preempted (counted already); the run is ``status``."""
        try:
            budget = self._budget(session, run_id)
        except (NotFound, SpecError) as exc:
            return _cannot_run_again(reason, exc)
        interrupted = interrupted_attempts(session, run_id)
        if interrupted <= budget.lost:
            what = "a preemption" if status == RunStatus.PREEMPTED else "a lost attempt"
            return Decision(RunStatus.QUEUED, f"retry {interrupted} of {budget.lost} after {what}")
        return Decision(RunStatus.FAILED, f"{reason}; {interrupted} attempts were lost or preempted, no retries left")

    def _budget(self, session: Session, run_id: int) -> Retries:
        run = queries.run_version(session, run_id)
        if run is None:
            raise NotFound(f"unknown run {run_id}", run=run_id)
        return self._catalog.get(session, run.model_name, run.model_version).spec.part(run.step).retries


def _cannot_run_again(reason: str | None, exc: NotFound | SpecError) -> Decision:
    """The run's version is not recorded (a damaged store) or names a resource class declared no
    more: no attempt of it can be claimed again, so it fails now rather than wait in the queue."""
    return Decision(RunStatus.FAILED, f"{reason}; it cannot run again: {exc.message}")


def interrupted_attempts(session: Session, run_id: int) -> int:
    """How many attempts of the run were lost or preempted: what ``retries.lost`` is spent on."""
    return queries.count_attempts(session, run_id, INTERRUPTED)


def is_last_chance(interrupted_before: int, retries: Retries) -> bool:
    """Whether an attempt after ``interrupted_before`` lost or preempted ones is the run's last
    chance against interruptions: a loss or preemption of it would fail the run (a backend may
    then choose capacity that is not interrupted)."""
    return interrupted_before >= retries.lost
