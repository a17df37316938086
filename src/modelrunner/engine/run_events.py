"""``run.succeeded``: the event triggers watch, written once when a run computes a result."""

from __future__ import annotations

from sqlalchemy.orm import Session

from modelrunner.clock import utcnow
from modelrunner.store import queries

RUN_SUCCEEDED = "run.succeeded"


def add_succeeded(session: Session, run_id: int) -> None:
    """Record that ``run_id`` computed its result (cache hits answer from an earlier one and
    add none). Its data names the model, the step and item of a pipeline, and the parameters."""
    run = queries.run_identity(session, run_id)
    if run is None:
        return
    data = {
        "run_id": run_id,
        "model": run.model_name,
        "kind": run.kind,
        "step": run.step,
        "item": run.item,
        "item_key": run.item_key,
        "pipeline_id": run.parent_id,
        "params": run.params,
        "origin": run.origin,
    }
    queries.add_event(session, run_id, RUN_SUCCEEDED, data, utcnow())
