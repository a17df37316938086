"""Who may see and cancel a run: the rules the API and the pages share."""

from __future__ import annotations

from sqlalchemy.orm import Session

from modelrunner.auth.access import Access
from modelrunner.errors import NotFound
from modelrunner.spec.access_spec import Level
from modelrunner.store import queries
from modelrunner.store.tables import RunRow


def permitted_run(session: Session, run_id: int, access: Access, level: Level, doing: str) -> RunRow:
    """The run, once the caller is known to have ``level`` on its model. A caller without any
    grant learns nothing (401), not even whether the run exists."""
    run = queries.get_run(session, run_id)
    if run is None:
        access.require_listing(doing)
        raise NotFound(f"unknown run {run_id}", run=run_id)
    access.require(run.model_name, level, doing)
    return run


def may_cancel(access: Access, run: RunRow) -> bool:
    """``run`` on the model cancels one's own runs, ``admin`` anyone's (and a schedule's)."""
    own = run.submitted_by is not None and run.submitted_by == access.principal.user_id
    return access.may(run.model_name, Level.RUN if own else Level.ADMIN)


def require_cancel(access: Access, run: RunRow) -> None:
    access.require(run.model_name, Level.RUN, "cancelling a run")
    if not may_cancel(access, run):
        access.require(run.model_name, Level.ADMIN, "cancelling a run someone else (or a schedule) submitted")
