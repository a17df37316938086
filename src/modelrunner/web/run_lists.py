"""Lists of runs on the pages: each run shown with the parameters that tell it apart from the
other runs of its model in the list, and the runs page, which filters them by status, submitter,
backend and parameter values with the API's own read (``GET /api/v1/runs``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Protocol
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response

from modelrunner.engine import run_reads
from modelrunner.engine.states import RunStatus
from modelrunner.errors import InvalidInput
from modelrunner.spec.access_spec import Level
from modelrunner.store.row_ids import INT64_MAX
from modelrunner.store.run_reads_queries import RunFilter
from modelrunner.web.rendering import PageRoute, render
from modelrunner.web.session import PageAccess, platform_of, viewed_model

router = APIRouter(route_class=PageRoute, include_in_schema=False)

RUNS_PER_PAGE = 50
FIRST_PARAMS = 3  # shown when no parameter differs between the listed runs of a model
MOST_PARAMS = 6  # differing parameters shown at most; the run's page has them all
VALUE_CHARS = 32  # a longer value is cut, with an ellipsis
_NONE = "—"  # a run without the parameter (the model's schema had none then)

Texts = Annotated[list[str], Query()]


class ListedParams(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def model_name(self) -> str: ...
    @property
    def params(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ShownParam:
    name: str
    value: str  # compact JSON (text unquoted), at most VALUE_CHARS characters

    def __str__(self) -> str:
        return f"{self.name}={self.value}"


@dataclass(frozen=True)
class ShownParams:
    """What a list shows of one run's parameters."""

    params: list[ShownParam]
    hidden: int  # differing parameters left out (MOST_PARAMS shown)

    def __str__(self) -> str:
        more = [f"+{self.hidden} more"] if self.hidden else []
        return ", ".join([*map(str, self.params), *more])


def telling_params(runs: Sequence[ListedParams]) -> dict[int, ShownParams]:
    """Run id -> the parameters that differ between the runs of its model in ``runs`` (a
    parameter one run lacks differs too), in the order the runs name them; where none differs
    (one run, or identical parameters), the first ``FIRST_PARAMS`` of the run's own."""
    by_model: dict[str, list[ListedParams]] = {}
    for run in runs:
        by_model.setdefault(run.model_name, []).append(run)
    shown: dict[int, ShownParams] = {}
    for model_runs in by_model.values():
        differing = _differing(model_runs)
        for run in model_runs:
            if differing:
                names, hidden = differing[:MOST_PARAMS], max(0, len(differing) - MOST_PARAMS)
            else:
                names, hidden = list(run.params)[:FIRST_PARAMS], 0
            params = [ShownParam(name, _short(run.params[name]) if name in run.params else _NONE) for name in names]
            shown[run.id] = ShownParams(params, hidden)
    return shown


def _differing(runs: Sequence[ListedParams]) -> list[str]:
    names = list(dict.fromkeys(name for run in runs for name in run.params))
    missing = object()
    return [
        name
        for name in names
        if len({json.dumps(run.params.get(name, missing), sort_keys=True, default=id) for run in runs}) > 1
    ]


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"


@router.get("/runs")
def runs_page(
    request: Request,
    access: PageAccess,
    model: str = "",
    status: Texts = [],  # noqa: B006 - FastAPI copies query defaults
    submitter: str = "",
    backend: str = "",
    param: Texts = [],  # noqa: B006
    since: str = "",
    until: str = "",
    before: str = "",
) -> Response:
    """The runs of the models the caller may view, newest first, a page at a time; an empty
    field of the filter form means "any"."""
    access.require_listing("listing runs")
    platform = platform_of(request)
    if model:
        viewed_model(platform, access, model)
    statuses = [s for s in status if s]
    unknown = sorted(set(statuses) - {s.value for s in RunStatus})
    if unknown:
        known = ", ".join(s.value for s in RunStatus)
        raise InvalidInput(f"status: unknown status '{unknown[0]}' (one of {known})", field="status")
    params = [p for p in param if p.strip()]
    before_id = _run_id(before, "before") if before else None
    which = RunFilter(
        model=model or None,
        statuses=statuses,
        before_id=before_id,
        submitter=submitter.strip() or None,
        backend=backend or None,
        params=run_reads.param_filters(params),
        since=run_reads.moment(since, "since") if since.strip() else None,
        until=run_reads.moment(until, "until") if until.strip() else None,
    )
    listing = run_reads.list_runs(platform, access, which, RUNS_PER_PAGE)
    chosen = {
        "model": model,
        "status": statuses,
        "submitter": submitter.strip(),
        "backend": backend,
        "param": params,
        "since": since.strip(),
        "until": until.strip(),
    }
    older = None
    if listing.more:
        older = "/runs?" + urlencode(_query(chosen, before=listing.runs[-1].id), doseq=True)
    models = [m.name for m in platform.workspace.models() if access.may(m.name, Level.VIEW)]
    return render(
        request,
        "runs.html",
        title=f"Runs of {model}" if model else "Runs",
        runs=listing.runs,
        listing=True,
        caption="Runs, newest first",
        submitters=listing.submitters,
        shown_params=telling_params(listing.runs),
        chosen=chosen,
        filtered=any(chosen.values()),
        models=models,
        statuses=[s.value for s in RunStatus],
        backends=sorted(platform.backends),
        older=older,
        newest="/runs?" + urlencode(_query(chosen), doseq=True) if before_id is not None else None,
    )


def _run_id(text: str, field: str) -> int:
    """A run id of the page's address; InvalidInput (an error page) for anything else."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= INT64_MAX:
        raise InvalidInput(f"{field}: '{text}' is no run id", field=field)
    return value


def _query(chosen: dict[str, Any], **more: Any) -> list[tuple[str, Any]]:
    """The filter as query parameters, the empty ones left out (a filtered list has a short URL)."""
    pairs: Iterable[tuple[str, Any]] = [*chosen.items(), *more.items()]
    query: list[tuple[str, Any]] = []
    for name, value in pairs:
        values = value if isinstance(value, list) else [value]
        query += [(name, v) for v in values if v not in ("", None)]
    return query
