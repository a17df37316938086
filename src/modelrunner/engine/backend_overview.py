"""The backends at a glance: each declared backend, its type, whether this server runs it and can
reach its engine, and how many attempts run and runs wait on it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.orm import Session

from modelrunner.backends.base import Backend
from modelrunner.spec.backend_spec import BackendSpec
from modelrunner.store import queries

log = logging.getLogger("modelrunner.backends")


@dataclass(frozen=True)
class BackendOverview:
    name: str
    type: str
    served: bool  # this server runs a dispatcher for it (declared since it started: not yet)
    problem: str | None  # why it cannot work now; None when it reaches its engine
    running: int  # attempts starting or running
    queued: int  # runs waiting for it

    @property
    def healthy(self) -> bool:
        return self.served and self.problem is None


def overview(
    session: Session, declared: Mapping[str, BackendSpec], served: Mapping[str, Backend]
) -> list[BackendOverview]:
    """Every backend ``declared`` (in declaration order), then any other that runs or has runs
    waiting (a backend removed from modelrunner.yaml while runs still wait for it)."""
    running = queries.active_attempt_counts_by_backend(session)
    queued = queries.queued_counts_by_backend(session)
    names = list(declared) + sorted((served.keys() | running.keys() | queued.keys()) - declared.keys())
    found = []
    for name in names:
        backend = served.get(name)
        kind = declared[name].type if name in declared else (backend.type if backend is not None else "unknown")
        found.append(
            BackendOverview(
                name,
                kind,
                backend is not None,
                _problem(name, backend, name in declared),
                running.get(name, 0),
                queued.get(name, 0),
            )
        )
    return found


def _problem(name: str, backend: Backend | None, declared: bool) -> str | None:
    if backend is None:
        if declared:
            return "declared after this server started: restart `modelrunner serve` to run it"
        return "not declared in modelrunner.yaml: its runs wait for a server that runs it"
    try:
        return backend.health()
    except Exception as exc:  # a health check must never break the listing
        log.warning("backend %s: health check failed: %s", name, exc)
        return f"its health check failed: {exc}"
