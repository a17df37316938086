"""A cache hit: a run recorded as answered by an earlier run's result, computing nothing."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from modelrunner.engine.states import RunStatus
from modelrunner.engine.transition import create_run
from modelrunner.store import queries
from modelrunner.store.tables import RunRow


def record_hit(session: Session, source: RunRow, now: dt.datetime, **values: Any) -> RunRow:
    """A run answered by ``source``'s result: succeeded at once, sharing its outputs."""
    hit = RunRow(
        model_name=source.model_name,
        model_version=source.model_version,
        params=source.params,
        inputs=source.inputs,
        cache_key=source.cache_key,
        status=RunStatus.SUCCEEDED.value,
        cache_hit=True,
        source_run_id=source.id,
        slots=source.slots,
        progress_fraction=1.0,
        created_at=now,
        started_at=now,
        finished_at=now,
        kind=source.kind,
        step=source.step,
        item_key=source.item_key,
        item=source.item,
        **values,
    )
    create_run(session, hit, cache_hit=True, source_run_id=source.id)
    queries.copy_outputs(session, source.id, hit.id)
    return hit
