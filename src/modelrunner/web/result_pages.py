"""Reading results: one output as a table and chart (CSV) or pretty-printed (JSON), and two runs
of a model side by side (parameters, data versions, their charts overlaid)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse

from modelrunner.auth.run_access import RunPermission
from modelrunner.engine import run_reads
from modelrunner.engine.states import RunStatus
from modelrunner.errors import InvalidInput, NotFound
from modelrunner.platform import Platform
from modelrunner.spec.access_spec import Level
from modelrunner.store.row_ids import RowId
from modelrunner.store.tables import OutputRow, RunRow
from modelrunner.web import output_preview
from modelrunner.web.output_preview import ChartChoice, Table
from modelrunner.web.rendering import PageRoute, render
from modelrunner.web.run_lists import telling_params
from modelrunner.web.session import PageAccess, PageRunViewer, platform_of, viewed_model

router = APIRouter(route_class=PageRoute, include_in_schema=False)

TABLE_ROWS = 100  # rows of a CSV a page shows at first; "more rows" adds as many again
COMPARABLE_RUNS = 50  # succeeded runs offered to compare against

Series = Annotated[list[str], Query()]


@dataclass(frozen=True)
class Chart:
    """A chart of one CSV output (of one run, or of two overlaid), and the controls that choose
    its x column and series."""

    key: str  # unique on the page: element ids derive from it
    path: str
    columns: list[str]
    numeric: list[str]
    choice: ChartChoice
    payload: dict[str, Any]


def _viewed_run(platform: Platform, viewer: RunPermission) -> tuple[RunRow, list[OutputRow]]:
    return run_reads.run_outputs(platform, viewer, "viewing a run's results")


def _output(run: RunRow, outputs: list[OutputRow], path: str) -> OutputRow:
    found = next((o for o in outputs if o.path == path), None)
    if found is None:
        raise NotFound(f"run {run.id} has no output '{path}'", run=run.id, path=path)
    return found


def chart_of(
    key: str,
    path: str,
    sources: list[tuple[str, Table]],
    x: str | None,
    series: list[str],
    right: list[str] | None = None,
) -> Chart:
    """A chart over ``sources`` (label, table); its columns are those of the first source.
    ``right``: the series the reader put on the right axis (None: not chosen yet)."""
    first = sources[0][1]
    choice = output_preview.with_right_axis(first.chart(x, series), [table for _, table in sources], right)
    return Chart(key, path, first.columns, first.numeric, choice, output_preview.chart_payload(sources))


def _right_axis(right: list[str], axes: str) -> list[str] | None:
    """The reader's choice of right-axis series; the chart's form always sends ``axes``, so
    without it nobody chose yet (and the chart puts series far smaller than the rest there)."""
    return right if axes else None


@router.get("/runs/{run_id}/results/{path:path}")
def output_page(
    viewer: PageRunViewer,
    path: str,
    request: Request,
    x: str | None = None,
    series: Series = [],  # noqa: B006 - FastAPI copies query defaults
    right: Series = [],  # noqa: B006
    axes: str = "",
    rows: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """A CSV output as a line chart and a table (``rows``: where the table's page starts), or a
    JSON output pretty-printed. Other files: the download."""
    platform = platform_of(request)
    run, outputs = _viewed_run(platform, viewer)
    output = _output(run, outputs, path)
    kind = output_preview.kind_of(path)
    if kind is None:
        return RedirectResponse(f"/runs/{run.id}/outputs/{path}", status_code=303)
    context: dict[str, Any] = {"title": f"{path} · run {run.id}", "run": run, "output": output, "kind": kind}
    if kind == "json":
        context["json"] = output_preview.read_json(platform.artifacts, output)
        return render(request, "output.html", **context)
    table = output_preview.read_table(platform.artifacts, output)
    if request.headers.get("HX-Request") and rows:
        # "More rows": the next rows for the table body, and the button moved on (out of band).
        return render(request, "table_rows.html", **context, **_table_page(table, rows))
    sources = [(f"run {run.id}", table)]
    chart = chart_of("output", path, sources, x, series, _right_axis(right, axes)) if table.numeric else None
    return render(request, "output.html", **context, chart=chart, **_table_page(table, rows))


def _table_page(table: Table, start: int) -> dict[str, Any]:
    end = start + TABLE_ROWS
    return {"table": table, "rows": table.rows[start:end], "next_rows": end if end < len(table.rows) else None}


@router.get("/models/{name}/compare")
def compare_page(
    name: str,
    request: Request,
    access: PageAccess,
    a: RowId | None = None,
    b: RowId | None = None,
    x: str | None = None,
    series: Series = [],  # noqa: B006 - FastAPI copies query defaults
    right: Series = [],  # noqa: B006
    axes: str = "",
) -> Response:
    """Two runs of ``name``: their parameters and data versions side by side (differences marked),
    each CSV output both runs have as one chart with both runs' lines, and JSON outputs side by side."""
    platform = platform_of(request)
    viewed_model(platform, access, name)
    choices = run_reads.recent_runs(
        platform, access, name, COMPARABLE_RUNS, "comparing runs", statuses=[RunStatus.SUCCEEDED]
    )
    context: dict[str, Any] = {
        "title": f"Compare runs of {name}",
        "model_name": name,
        "choices": choices,
        "shown_params": telling_params(choices),
        "a": a,
        "b": b,
    }
    if a is None or b is None:
        return render(request, "compare.html", **context)
    runs = [_viewed_run(platform, RunPermission(run_id, access, Level.VIEW)) for run_id in (a, b)]
    for run, _ in runs:
        if run.model_name != name:
            raise InvalidInput(f"run {run.id} is a run of '{run.model_name}', not of '{name}'", run=run.id)
    (run_a, outputs_a), (run_b, outputs_b) = runs
    shared = sorted({o.path for o in outputs_a} & {o.path for o in outputs_b})
    by_path_a, by_path_b = {o.path: o for o in outputs_a}, {o.path: o for o in outputs_b}
    charts, documents = [], []
    for index, path in enumerate(shared):
        kind = output_preview.kind_of(path)
        if kind == "csv":
            tables = [
                (f"run {run.id}", output_preview.read_table(platform.artifacts, outputs[path]))
                for run, outputs in ((run_a, by_path_a), (run_b, by_path_b))
            ]
            if tables[0][1].numeric:
                charts.append(chart_of(f"compare-{index}", path, tables, x, series, _right_axis(right, axes)))
        elif kind == "json":
            pair = (
                output_preview.read_json(platform.artifacts, by_path_a[path]),
                output_preview.read_json(platform.artifacts, by_path_b[path]),
            )
            documents.append((path, pair))
    context.update(
        run_a=run_a,
        run_b=run_b,
        params=_side_by_side(run_a.params, run_b.params),
        inputs=_side_by_side(
            {k: v.get("version") for k, v in run_a.inputs.items()},
            {k: v.get("version") for k, v in run_b.inputs.items()},
        ),
        outputs=_outputs_side_by_side(by_path_a, by_path_b),
        charts=charts,
        documents=documents,
    )
    return render(request, "compare.html", **context)


@dataclass(frozen=True)
class Pair:
    name: str
    a: Any
    b: Any

    @property
    def differs(self) -> bool:
        return bool(self.a != self.b)


_MISSING = "—"


def _side_by_side(a: dict[str, Any] | Any, b: dict[str, Any] | Any) -> list[Pair]:
    a = a if isinstance(a, dict) else {"(value)": a}
    b = b if isinstance(b, dict) else {"(value)": b}
    return [Pair(key, a.get(key, _MISSING), b.get(key, _MISSING)) for key in sorted(a.keys() | b.keys())]


def _outputs_side_by_side(a: dict[str, OutputRow], b: dict[str, OutputRow]) -> list[Pair]:
    """Per output path: its sha256 in each run (the same content when they are equal)."""
    return [
        Pair(path, a[path].sha256 if path in a else _MISSING, b[path].sha256 if path in b else _MISSING)
        for path in sorted(a.keys() | b.keys())
    ]
