"""A pipeline as the graph of its steps: a layered layout of the step DAG, drawn as inline SVG by
templates/pipeline_graph.html, with each step's state on a pipeline run's page (refreshed live by
htmx while the run goes on) and the bare structure on a pipeline model's page.

Layers run top to bottom: a step's layer is the longest path of ``needs`` from a step that needs
nothing, so every arrow points down. Within a layer the steps keep the order they are written in.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import ClassVar

from fastapi import APIRouter, Request, Response

from modelrunner.engine import run_reads
from modelrunner.engine.pipelines import StepState
from modelrunner.engine.run_reads import PipelineProgress
from modelrunner.engine.states import ACTIVE_RUN_STATES, FINAL_RUN_STATES, RunStatus
from modelrunner.errors import NotFound
from modelrunner.spec.model_spec import ModelSpec, Need
from modelrunner.store.queries import ChildRun
from modelrunner.store.tables import RunRow
from modelrunner.web.rendering import PageRoute, templates
from modelrunner.web.session import PageRunViewer, platform_of

router = APIRouter(route_class=PageRoute, include_in_schema=False)

BOX_WIDTH = 184
BOX_HEIGHT = 64
GAP_X = 24  # between two boxes of a layer
GAP_Y = 44  # between two layers: room for the arrows
WAYPOINT_WIDTH = 8  # the slot an arrow that skips a layer takes in it
MARGIN = 8
SHRINKS_UP_TO = 460  # wider, the drawing scrolls on a phone instead of shrinking below 3/4 of its size
NAME_CHARS = 20  # what fits a box in the drawing's 14px bold; the list below has the full name
DETAIL_CHARS = 24  # what fits a box in the detail's smaller type
ITEMS_LISTED = 25  # item runs a fan-out step links to in the list; its box links the one to look at


@dataclass(frozen=True)
class ItemLink:
    """One run of a fan-out step."""

    key: str
    status: str
    run_id: int


@dataclass(frozen=True)
class StepBox:
    """A step where the drawing puts it, with what its box and its list entry say."""

    name: str
    label: str  # the name, shortened to fit the box
    x: int
    y: int
    needs: tuple[str, ...]
    status: str | None  # a StepStatus; None for the structure of a model without a run
    detail: str  # "5/5 items done, 1 failed", "50% done", "for each params.regions", ...
    run_id: int | None  # the run the box links to: the step's run, or its failed / first item
    items: tuple[ItemLink, ...] = ()  # a fan-out's runs, at most ITEMS_LISTED
    more_items: int = 0
    error: str | None = None
    reason: str | None = None  # why it is skipped or blocked

    @property
    def drawn_detail(self) -> str:
        """The detail the box draws: for a step that never started, why (the list says it whole)."""
        if not self.detail and self.reason:
            return _shortened(self.reason, DETAIL_CHARS)
        return self.detail


@dataclass(frozen=True)
class Arrow:
    """From a step to a step that needs it, as an SVG path."""

    need: str
    step: str
    path: str
    how: str = Need.ALL.value  # drawn dashed when optional, doubled when item by item


@dataclass(frozen=True)
class PipelineGraph:
    """What templates/pipeline_graph.html draws; ``run_id`` None for a model's structure."""

    run_id: int | None
    final: bool
    boxes: tuple[StepBox, ...]
    arrows: tuple[Arrow, ...]
    width: int
    height: int
    box_width: ClassVar[int] = BOX_WIDTH
    box_height: ClassVar[int] = BOX_HEIGHT

    @property
    def live(self) -> bool:
        """The page should ask again: a pipeline run that is still going."""
        return self.run_id is not None and not self.final

    @property
    def wide(self) -> bool:
        return self.width > SHRINKS_UP_TO

    @property
    def version(self) -> str:
        """Changes whenever anything drawn changes: a poll that saw this version gets a 204."""
        return hashlib.sha256(repr((self.final, self.boxes)).encode()).hexdigest()[:16]


def graph_of(run: RunRow, pipeline: PipelineProgress | None) -> PipelineGraph | None:
    """The graph of a pipeline run with each step's current state (``pipeline``, as the read-model
    gives it); None for any other run."""
    if pipeline is None:
        return None
    by_step: dict[str, list[ChildRun]] = defaultdict(list)
    for child in pipeline.children:
        by_step[child.step].append(child)
    boxes = {state.name: _state_box(pipeline.spec, state, by_step[state.name]) for state in pipeline.states}
    return _laid_out(pipeline.spec, boxes, run.id, run.status in FINAL_RUN_STATES)


def structure_of(spec: ModelSpec) -> PipelineGraph | None:
    """The steps of a pipeline model and their needs, without states; None for a model that is
    not a pipeline."""
    if not spec.is_pipeline:
        return None
    boxes = {name: _structure_box(spec, name) for name in spec.steps}
    return _laid_out(spec, boxes, None, True)


@router.get("/runs/{run_id}/graph")
def graph_fragment(viewer: PageRunViewer, request: Request, seen: str = "") -> Response:
    """The graph of a pipeline run alone, for the run page to swap in. ``seen`` is the version
    the page shows: unchanged, the answer is an empty 204 and the page keeps what it has."""
    graph = graph_of(*run_reads.pipeline_progress(platform_of(request), viewer))
    if graph is None:
        run_id = viewer.run_id
        raise NotFound(f"run {run_id} is not a pipeline run; it has no steps to draw", run=run_id)
    headers = {"Cache-Control": "no-store"}
    if seen == graph.version:
        return Response(status_code=204, headers=headers)
    return templates.TemplateResponse(request, "pipeline_graph.html", {"graph": graph}, headers=headers)


# --- what each box says -------------------------------------------------------------------------


def _state_box(spec: ModelSpec, state: StepState, runs: list[ChildRun]) -> StepBox:
    fan_out = spec.fan_out(state.name) is not None
    ended = [run for run in runs if run.status not in ACTIVE_RUN_STATES]
    failed = [run for run in ended if run.status != RunStatus.SUCCEEDED]
    running = [run for run in runs if run.status == RunStatus.RUNNING]
    if fan_out:
        detail = f"{len(ended)}/{state.items} items done" + (f", {len(failed)} failed" if failed else "")
        shown = failed or running or runs
        items = tuple(ItemLink(run.item_key or "", run.status, run.id) for run in runs[:ITEMS_LISTED])
    else:
        progress = running[0].progress if running else None
        detail = f"{round(progress * 100)}% done" if progress is not None else ""
        shown, items = runs, ()
    return StepBox(
        name=state.name,
        label=_shortened(state.name),
        x=0,
        y=0,
        needs=_needs_of(spec, state.name),
        status=state.status.value,
        detail=detail,
        run_id=shown[0].id if shown else None,
        items=items,
        more_items=max(0, len(runs) - ITEMS_LISTED),
        error=state.error,
        reason=state.reason,
    )


def _structure_box(spec: ModelSpec, name: str) -> StepBox:
    step = spec.steps[name]
    fan_out = spec.fan_out(name)
    chained = step.needed(Need.ITEM)
    if chained:
        detail = f"item by item after {chained[0]}"
    elif isinstance(fan_out, str):
        detail = f"for each {fan_out}"
    elif fan_out is not None:
        detail = f"for each of {len(fan_out)} items"
    else:
        detail = "runs once"
    if step.when is not None:
        detail += f", if {step.when}"
    if step.publish:
        detail += ", publishes"
    return StepBox(name, _shortened(name), 0, 0, _needs_of(spec, name), None, detail, None)


_NEED_SHOWN = {Need.ALL: "", Need.ITEM: " item by item", Need.OPTIONAL: " if it runs"}


def _needs_of(spec: ModelSpec, name: str) -> tuple[str, ...]:
    """The steps ``name`` needs as its list entry names them: "tests item by item"."""
    return tuple(f"{needed}{_NEED_SHOWN[how]}" for needed, how in spec.steps[name].needs.items())


def _shortened(name: str, chars: int = NAME_CHARS) -> str:
    return name if len(name) <= chars else name[: chars - 1] + "…"


# --- the layout ---------------------------------------------------------------------------------

# An arrow that skips layers passes each layer it crosses through a narrow slot of its own beside
# the boxes of that layer (a "waypoint"), so that it never runs through a box.
_Slot = str  # a step's name, or a waypoint's key (which no step name can be)


def _laid_out(spec: ModelSpec, boxes: dict[str, StepBox], run_id: int | None, final: bool) -> PipelineGraph:
    layer: dict[str, int] = {}
    for name in spec.step_order():  # each step after those it needs
        layer[name] = 1 + max((layer[needed] for needed in spec.steps[name].needs), default=-1)
    rows: list[list[_Slot]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for name in spec.steps:  # in the order written
        rows[layer[name]].append(name)
    pairs = [(needed, name) for name in spec.step_order() for needed in spec.steps[name].needs]
    waypoints: dict[tuple[str, str], list[_Slot]] = {}
    above: dict[_Slot, list[_Slot]] = {name: [] for name in spec.steps}  # what each slot hangs from
    for number, (needed, name) in enumerate(pairs):
        chain = [f"#{number}.{depth}" for depth in range(layer[needed] + 1, layer[name])]
        for depth, key in zip(range(layer[needed] + 1, layer[name]), chain, strict=True):
            rows[depth].append(key)
        hops = [needed, *chain]
        for before, key in zip(hops, chain, strict=False):
            above[key] = [before]
        above[name].append(hops[-1])
        waypoints[(needed, name)] = chain

    left_of: dict[_Slot, float] = {}
    centre: dict[_Slot, float] = {}
    for row in rows:
        # Each slot wants to be under what it hangs from (their mean); the steps keep their
        # written order, and the waypoints go in among them where they want to be.
        wanted = {slot: sum(centre[a] for a in above[slot]) / max(len(above[slot]), 1) for slot in row}
        vias = sorted((slot for slot in row if slot not in spec.steps), key=wanted.__getitem__)
        ordered: list[_Slot] = []
        for slot in (slot for slot in row if slot in spec.steps):
            while vias and wanted[vias[0]] < wanted[slot]:
                ordered.append(vias.pop(0))
            ordered.append(slot)
        left = float(MARGIN)
        for slot in ordered + vias:
            width = _width(spec, slot)
            left_of[slot] = max(left, wanted[slot] - width / 2) if above[slot] else left
            centre[slot] = left_of[slot] + width / 2
            left = left_of[slot] + width + GAP_X
    placed = {name: replace(boxes[name], x=round(left_of[name]), y=_top(layer[name])) for name in spec.step_order()}
    right = max((left_of[slot] + _width(spec, slot) for slot in left_of), default=0)
    height = MARGIN * 2 + len(rows) * (BOX_HEIGHT + GAP_Y) - GAP_Y
    how = {(needed, name): spec.steps[name].needs[needed].value for needed, name in pairs}
    arrows = _arrows(pairs, placed, waypoints, centre, layer, how)
    return PipelineGraph(run_id, final, tuple(placed.values()), arrows, round(right) + MARGIN, max(height, 0))


def _width(spec: ModelSpec, slot: _Slot) -> int:
    return BOX_WIDTH if slot in spec.steps else WAYPOINT_WIDTH


def _top(depth: int) -> int:
    return MARGIN + depth * (BOX_HEIGHT + GAP_Y)


def _arrows(
    pairs: list[tuple[str, str]],
    placed: dict[str, StepBox],
    waypoints: dict[tuple[str, str], list[_Slot]],
    centre: dict[_Slot, float],
    layer: dict[str, int],
    how: dict[tuple[str, str], str],
) -> tuple[Arrow, ...]:
    """An arrow from the bottom of each need, through its waypoints, to the top of the step;
    several arrows leaving or entering one box are spread along its edge, in the order of where
    they go next (or come from)."""
    leaving: dict[str, list[tuple[str, str]]] = defaultdict(list)
    entering: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for pair in pairs:
        leaving[pair[0]].append(pair)
        entering[pair[1]].append(pair)
    for ends in leaving.values():
        ends.sort(key=lambda pair: centre[(waypoints[pair] or [pair[1]])[0]])
    for ends in entering.values():
        ends.sort(key=lambda pair: centre[(waypoints[pair] or [pair[0]])[-1]])
    arrows = []
    for pair in pairs:
        needed, name = pair
        x = _spread(placed[needed].x, leaving[needed].index(pair), len(leaving[needed]))
        y = placed[needed].y + BOX_HEIGHT
        path = f"M{x:g},{y}"
        for number, key in enumerate(waypoints[pair]):
            top = _top(layer[needed] + 1 + number)
            path += _curve(x, y, centre[key], top) + f" L{centre[key]:g},{top + BOX_HEIGHT}"
            x, y = centre[key], top + BOX_HEIGHT
        end = _spread(placed[name].x, entering[name].index(pair), len(entering[name]))
        path += _curve(x, y, end, placed[name].y - 2)  # the arrowhead's tip touches the box
        arrows.append(Arrow(needed, name, path, how[pair]))
    return tuple(arrows)


def _curve(x1: float, y1: float, x2: float, y2: float) -> str:
    """From (x1, y1) down to (x2, y2), leaving and arriving vertically."""
    bend = (y2 - y1) / 2
    return f" C{x1:g},{y1 + bend:g} {x2:g},{y2 - bend:g} {x2:g},{y2}"


def _spread(left: int, index: int, count: int) -> float:
    """Where the ``index``-th of ``count`` arrows meets a box's edge: evenly over its middle half."""
    return left + BOX_WIDTH / 4 + BOX_WIDTH / 2 * (index + 1) / (count + 1)
