"""Who may see and cancel a run: the rules the API and the pages share."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from modelrunner.auth.access import Access
from modelrunner.errors import NotFound
from modelrunner.spec.access_spec import Level
from modelrunner.store import queries
from modelrunner.store.tables import RunRow


@dataclass(frozen=True)
class RunPermission:
    """A caller's wish to act on one run, needing ``level`` on the run's model. Which model that
    is only the store knows, so it is checked by ``permitted_run`` in the transaction of the read
    that follows (engine/run_reads.py): the check and the read see the same run."""

    run_id: int
    access: Access
    level: Level


def permitted_run(session: Session, permission: RunPermission, doing: str) -> RunRow:
    """The run, once the caller is known to have the level on its model. A run of a model the
    caller may not view is NotFound exactly as an unknown run is: run ids are sequential, and a
    caller walking them must not learn which hidden models exist and run. An anonymous caller is
    asked to sign in for either."""
    run = queries.get_run(session, permission.run_id)
    if run is None or not permission.access.may(run.model_name, Level.VIEW):
        permission.access.require_signed_in(doing)
        raise NotFound(f"unknown run {permission.run_id}", run=permission.run_id)
    permission.access.require(run.model_name, permission.level, doing)
    return run


def may_cancel(access: Access, run: RunRow) -> bool:
    """``run`` on the model cancels one's own runs, ``admin`` anyone's (and a schedule's)."""
    own = run.submitted_by is not None and run.submitted_by == access.principal.user_id
    return access.may(run.model_name, Level.RUN if own else Level.ADMIN)


def require_cancel(access: Access, run: RunRow) -> None:
    access.require(run.model_name, Level.RUN, "cancelling a run")
    if not may_cancel(access, run):
        access.require(run.model_name, Level.ADMIN, "cancelling a run someone else (or a schedule) submitted")
