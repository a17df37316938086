"""Pipelines: a run whose children are step runs. Planning a pipeline, advancing it as its steps
end, and deriving its status and progress from its children, all from what the database holds."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from modelrunner.clock import utcnow
from modelrunner.engine import run_events
from modelrunner.engine.cache_hit import record_hit
from modelrunner.engine.cache_key import cache_key
from modelrunner.engine.input_versions import Inputs
from modelrunner.engine.states import ACTIVE_RUN_STATES, RunStatus
from modelrunner.engine.step_versions import StepVersion
from modelrunner.engine.transition import create_run, transition
from modelrunner.errors import InvalidInput
from modelrunner.spec.model_spec import ModelSpec, Need, StepSpec
from modelrunner.store import data_queries, queries
from modelrunner.store.tables import OutputRow, RunKind, RunRow

_ITEM_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
MAX_ITEMS = 10_000  # per step: a fan-out beyond this is almost surely a mistake in the parameters


class StepStatus(StrEnum):
    WAITING = "waiting"  # for the steps it needs (or for an identical run elsewhere)
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    BLOCKED = "blocked"  # a step it needs failed: it will not run (or not every item of it)
    SKIPPED = "skipped"  # left out: its `when:` is false, the profile does not publish, or it needs such a step


@dataclass(frozen=True)
class PipelinePlan:
    """Fixed when the pipeline run is created: the items of each step (none: a step that succeeds
    at once), what is computed again whatever the cache holds, what is left out and why, and the
    profile its steps are computed under (RunProfile.as_json; None without a profile)."""

    items: dict[str, list[tuple[str | None, Any]]]  # step -> [(item key, item)]; [(None, None)] without fan-out
    refresh: frozenset[str] = frozenset()
    skip: list[str] = field(default_factory=list)
    rerun_of: int | None = None
    skipped_because: dict[str, str] = field(default_factory=dict)  # step in `skip` -> why
    profile: dict[str, Any] | None = None
    # step -> StepVersion.as_json(): what stands for the model version in its runs' keys
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "items": {step: [[key, item] for key, item in items] for step, items in self.items.items()},
            "refresh": sorted(self.refresh),
            "skip": self.skip,
            "rerun_of": self.rerun_of,
            "skipped_because": self.skipped_because,
        }
        if self.profile is not None:
            data["profile"] = self.profile
        if self.versions:
            data["versions"] = self.versions
        return data

    @classmethod
    def of_json(cls, data: dict[str, Any]) -> PipelinePlan:
        return cls(
            items={step: [(key, item) for key, item in items] for step, items in data["items"].items()},
            refresh=frozenset(data.get("refresh", [])),
            skip=list(data.get("skip", [])),
            rerun_of=data.get("rerun_of"),
            skipped_because=dict(data.get("skipped_because", {})),
            profile=data.get("profile"),
            versions=dict(data.get("versions", {})),
        )

    @property
    def total(self) -> int:
        return sum(len(items) for items in self.items.values())


@dataclass(frozen=True)
class StepState:
    """A step of a pipeline run as its children show it."""

    name: str
    status: StepStatus
    items: int
    counts: dict[str, int]  # run status -> how many of its runs
    run_ids: list[int]
    error: str | None = None
    reason: str | None = None  # why it is skipped or blocked


def plan(
    session: Session,
    spec: ModelSpec,
    params: dict[str, Any],
    inputs: Inputs,
    refresh: set[str],
    publish: bool,
    rerun_of: int | None = None,
    profile: dict[str, Any] | None = None,
    versions: dict[str, StepVersion] | None = None,
) -> PipelinePlan:
    """The plan of a new pipeline run. InvalidInput for a fan-out that is not a list.

    See ``left_out`` for the steps it leaves out. A step chained item by item gets the items of
    the step it is chained to. ``versions`` (step_versions) key each step's runs; a step
    without one is keyed by the pipeline's model version."""
    unknown = sorted(refresh - set(spec.steps))
    if unknown:
        raise InvalidInput(f"model '{spec.name}' has no step {unknown[0]!r}", field="from")
    because = left_out(spec, params, publish)
    items: dict[str, list[tuple[str | None, Any]]] = {}
    for name in spec.step_order():
        step = spec.steps[name]
        if name in because:
            continue
        chained = step.needed(Need.ITEM)
        if chained:
            items[name] = list(items[chained[0]])
        else:
            items[name] = _keyed(_items_of(session, name, step, params, inputs))
    skip = [name for name in spec.step_order() if name in because]
    kept = {name: version.as_json() for name, version in (versions or {}).items() if name in items}
    return PipelinePlan(items, frozenset(refresh), skip, rerun_of, because, profile, kept)


def left_out(spec: ModelSpec, params: dict[str, Any], publish: bool) -> dict[str, str]:
    """The steps a pipeline run with these (validated) parameters leaves out, in order, each with
    why: its ``when:`` does not hold, it publishes and ``publish`` is false, or it needs a step
    left out (unless it needs that step only ``optional``-ly)."""
    because: dict[str, str] = {}
    for name in spec.step_order():
        reason = _left_out_because(spec.steps[name], params, publish, because)
        if reason is not None:
            because[name] = reason
    return because


def _left_out_because(step: StepSpec, params: dict[str, Any], publish: bool, left_out: dict[str, str]) -> str | None:
    condition = step.condition
    if condition is not None and not condition.holds(params):
        return f"when: {condition.text} is false"
    if step.publish and not publish:
        return "this profile does not publish"
    needed = next((n for n, how in step.needs.items() if n in left_out and how != Need.OPTIONAL), None)
    if needed is not None:
        return f"it needs '{needed}', which is skipped"
    return None


def downstream_of(spec: ModelSpec, start: str) -> set[str]:
    """``start`` and every step that needs it, directly or not."""
    found = {start}
    for name in spec.step_order():
        if any(needed in found for needed in spec.steps[name].needs):
            found.add(name)
    return found


def advance(session: Session, pipeline_id: int, spec: ModelSpec) -> None:
    """Start every step whose needs have succeeded, update the pipeline's progress, and end it
    once nothing more can run. Safe to call at any time and any number of times."""
    if queries.lock_run_status(session, pipeline_id) != RunStatus.RUNNING.value:
        return
    pipeline = queries.get_run(session, pipeline_id)
    assert pipeline is not None and pipeline.plan is not None
    pipeline_plan = PipelinePlan.of_json(pipeline.plan)
    children = _by_step(queries.children_of(session, pipeline_id))
    states = _walk(
        spec,
        pipeline_plan,
        children,
        start=lambda name, ready: _start_step(session, pipeline, spec, pipeline_plan, name, ready, children),
    )
    _report(session, pipeline, pipeline_plan, states, children)


def step_states(session: Session, pipeline: RunRow, spec: ModelSpec) -> list[StepState]:
    """The steps of a pipeline run, in order, as its children show them (read only)."""
    pipeline_plan = PipelinePlan.of_json(pipeline.plan or {"items": {}})
    children = _by_step(queries.children_of(session, pipeline.id))
    return list(_walk(spec, pipeline_plan, children).values())


def _walk(
    spec: ModelSpec,
    pipeline_plan: PipelinePlan,
    children: dict[str, list[queries.ChildRun]],
    start: Callable[[str, set[str | None]], list[queries.ChildRun]] | None = None,
) -> dict[str, StepState]:
    """Each step's state, in order; ``start`` creates the missing runs of the given items of a
    step whose needs allow them (advancing), and ``children`` gains them.

    A step needs each step it needs in full (``all``, or ``optional`` and not left out) to have
    succeeded; a step chained item by item needs, for each of its items, that same item of the
    steps it is chained to, so one item's chain goes on while another's is still running."""
    states: dict[str, StepState] = {}
    never: dict[str, set[str | None]] = {}  # step -> its items that will not run (blocked)
    for name in spec.step_order():
        step = spec.steps[name]
        runs = children.get(name, [])
        keys = [key for key, _ in pipeline_plan.items.get(name, [])]
        if name in pipeline_plan.skip:
            states[name] = _state(name, StepStatus.SKIPPED, 0, runs, pipeline_plan.skipped_because.get(name))
            never[name] = set()
            continue
        whole = [n for n, how in step.needs.items() if how != Need.ITEM and n not in pipeline_plan.skip]
        chained = step.needed(Need.ITEM)
        stopped = next((n for n in whole if states[n].status in (StepStatus.FAILED, StepStatus.BLOCKED)), None)
        if stopped is not None:
            why = f"it needs '{stopped}', which did not succeed"
            states[name] = _state(name, StepStatus.BLOCKED, len(keys), runs, why)
            never[name] = set(keys)
            continue
        if any(states[n].status != StepStatus.SUCCEEDED for n in whole):
            states[name] = _state(name, StepStatus.WAITING, len(keys), runs)
            never[name] = set()
            continue
        ready, blocked = _chained_items(keys, chained, children, never)
        if start is not None and ready:
            runs = children[name] = runs + start(name, ready)
        never[name] = blocked - {run.item_key for run in runs}
        reason = None
        if never[name]:
            shown = ", ".join(sorted(str(key) for key in never[name])[:5])
            reason = f"not run for {shown}: the same item of a step it is chained to did not succeed"
        states[name] = _derived(name, len(keys), runs, len(never[name]), reason)
    return states


def _chained_items(
    keys: list[str | None],
    chained: list[str],
    children: dict[str, list[queries.ChildRun]],
    never: dict[str, set[str | None]],
) -> tuple[set[str | None], set[str | None]]:
    """The items that may start now (the same item of every step they are chained to succeeded;
    all of them without chains), and those that never will (it ended otherwise, or is blocked)."""
    if not chained:
        return set(keys), set()
    ready: set[str | None] = set()
    blocked: set[str | None] = set()
    by_item = {n: {run.item_key: run for run in children.get(n, [])} for n in chained}
    for key in keys:
        upstream = [by_item[n].get(key) for n in chained]
        if any(key in never[n] for n in chained) or any(
            run is not None and run.status not in ACTIVE_RUN_STATES and run.status != RunStatus.SUCCEEDED.value
            for run in upstream
        ):
            blocked.add(key)
        elif all(run is not None and run.status == RunStatus.SUCCEEDED.value for run in upstream):
            ready.add(key)
    return ready, blocked


# --- advancing ----------------------------------------------------------------------------------


def _start_step(
    session: Session,
    pipeline: RunRow,
    spec: ModelSpec,
    pipeline_plan: PipelinePlan,
    name: str,
    ready: set[str | None],
    children: dict[str, list[queries.ChildRun]],
) -> list[queries.ChildRun]:
    """Create the runs of the step's ``ready`` items that have none yet: a cache hit where the
    same step was computed on the same upstream results, a queued run otherwise. They are the
    pipeline run's submitter's, and a queued one runs on the pipeline run's backend. An item
    chained to other steps reads (and is keyed by) only the same item of theirs."""
    started = {run.item_key for run in children.get(name, [])}
    missing = [(key, item) for key, item in pipeline_plan.items[name] if key not in started and key in ready]
    if not missing:
        return []
    step = spec.steps[name]
    chained = step.needed(Need.ITEM)
    whole_runs = [run for n in step.needs if n not in chained for run in children.get(n, [])]
    chained_runs = {
        key: [run for n in chained for run in children.get(n, []) if run.item_key == key] for key, _ in missing
    }
    outputs = _outputs_by_run(session, [*whole_runs, *(run for runs in chained_runs.values() for run in runs)])
    inputs = {input_name: chosen["version"] for input_name, chosen in pipeline.inputs.items()}
    now = utcnow()
    overrides = (pipeline.plan or {}).get("overrides")
    created: list[queries.ChildRun] = []
    for item_key, item in missing:
        upstream_files, upstream_key = _upstream([*whole_runs, *chained_runs[item_key]], outputs)
        key = cache_key(
            pipeline.model_name,
            pipeline_plan.versions.get(name, {}).get("version", pipeline.model_version),
            pipeline.params,
            step=name,
            item=item,
            input_versions=inputs,
            upstream_outputs=upstream_key,
            profile=pipeline_plan.profile,
        )
        if name not in pipeline_plan.refresh:
            cached = queries.latest_computed_success(session, key, None)
            if cached is not None:
                hit = record_hit(
                    session,
                    cached,
                    now,
                    parent_id=pipeline.id,
                    origin=pipeline.origin,
                    submitted_by=pipeline.submitted_by,
                    backend=cached.backend,  # a hit shows where its result was computed
                    backend_rule=cached.backend_rule,
                )
                created.append(queries.ChildRun.of(hit))
                continue
        if queries.active_run_for_key(session, key) is not None:
            continue  # computed right now for another pipeline: this item waits for its result
        # upstream_key: the upstream part of its key, so `runs explain` can say what changed.
        run_plan: dict[str, Any] = {"upstream": upstream_files, "upstream_key": upstream_key}
        if pipeline_plan.profile is not None:
            run_plan["profile"] = pipeline_plan.profile
        if overrides:
            run_plan["overrides"] = overrides  # the pipeline run's own timeout: each step's
        run = RunRow(
            kind=RunKind.STEP,
            parent_id=pipeline.id,
            step=name,
            item_key=item_key,
            item=item,
            model_name=pipeline.model_name,
            model_version=pipeline.model_version,
            params=pipeline.params,
            inputs=pipeline.inputs,
            plan=run_plan,
            cache_key=key,
            status=RunStatus.QUEUED.value,
            cache_hit=False,
            slots=step.resources.slots,
            origin=pipeline.origin,
            submitted_by=pipeline.submitted_by,
            backend=pipeline.backend,
            backend_rule=pipeline.backend_rule,
            created_at=now,
        )
        create_run(session, run)
        created.append(queries.ChildRun.of(run))
    return created


def _outputs_by_run(session: Session, runs: list[queries.ChildRun]) -> dict[int, list[OutputRow]]:
    found: dict[int, list[OutputRow]] = defaultdict(list)
    for output in queries.outputs_of_runs(session, sorted({run.id for run in runs})):
        found[output.run_id].append(output)
    return found


def _upstream(
    runs: list[queries.ChildRun], outputs: dict[int, list[OutputRow]]
) -> tuple[list[dict[str, str]], dict[str, dict[str, str]]]:
    """The files of the upstream ``runs``, as (folder, path, uri), and their digests by folder
    for the cache key: a step computed again on changed upstream results is a new run."""
    files: list[dict[str, str]] = []
    digests: dict[str, dict[str, str]] = {}
    for run in runs:
        folder = _folder(run)
        digests.setdefault(folder, {})  # a run without outputs still counts
        for output in outputs.get(run.id, []):
            files.append({"folder": folder, "path": output.path, "uri": output.uri})
            digests[folder][output.path] = output.sha256
    return files, digests


def _report(
    session: Session,
    pipeline: RunRow,
    pipeline_plan: PipelinePlan,
    states: dict[str, StepState],
    children: dict[str, list[queries.ChildRun]],
) -> None:
    """Write the pipeline's progress, or end it when no step can move any more."""
    unfinished = [s for s in states.values() if s.status in (StepStatus.WAITING, StepStatus.RUNNING)]
    if unfinished:
        done = sum(1 for runs in children.values() for run in runs if run.status not in ACTIVE_RUN_STATES)
        running = sum(run.progress or 0.0 for runs in children.values() for run in runs if run.status == "running")
        fraction = min(1.0, (done + running) / max(pipeline_plan.total, 1))
        running_steps = ", ".join(s.name for s in unfinished if s.status == StepStatus.RUNNING)
        message = f"{len(states) - len(unfinished)} of {len(states)} steps done" + (
            f"; running: {running_steps}" if running_steps else ""
        )
        if (round(fraction, 4), message) != (round(pipeline.progress_fraction or 0.0, 4), pipeline.progress_message):
            queries.set_run_progress(session, pipeline.id, fraction, message)
        return
    failed = [s for s in states.values() if s.status == StepStatus.FAILED]
    if failed:
        names = ", ".join(f"'{s.name}'" for s in failed)
        reason = f"step {names} failed: {failed[0].error}" if len(failed) == 1 else f"steps {names} failed"
        transition(session, pipeline.id, RunStatus.FAILED, reason=reason)
        return
    outputs = []
    for runs in children.values():
        folders = {run.id: _folder(run) for run in runs}
        for output in queries.outputs_of_runs(session, list(folders)):
            path = f"{folders[output.run_id]}/{output.path}"
            outputs.append({"path": path, "size": output.size, "sha256": output.sha256, "uri": output.uri})
    queries.add_outputs(session, pipeline.id, outputs)
    transition(session, pipeline.id, RunStatus.SUCCEEDED, progress_fraction=1.0, progress_message=None)
    run_events.add_succeeded(session, pipeline.id)


# --- deriving step states -----------------------------------------------------------------------


def _by_step(children: list[queries.ChildRun]) -> dict[str, list[queries.ChildRun]]:
    grouped: dict[str, list[queries.ChildRun]] = defaultdict(list)
    for child in children:
        grouped[child.step].append(child)
    return grouped


def _derived(
    name: str, total: int, runs: list[queries.ChildRun], blocked: int = 0, reason: str | None = None
) -> StepState:
    """A started step's state from its runs; ``blocked`` of its items will never run."""
    statuses = {run.status for run in runs}
    if statuses & {s.value for s in ACTIVE_RUN_STATES}:
        status = StepStatus.RUNNING
    elif len(runs) + blocked < total:
        status = StepStatus.WAITING
    elif not statuses <= {RunStatus.SUCCEEDED.value}:
        status = StepStatus.FAILED
    elif blocked:
        status = StepStatus.BLOCKED
    else:
        status = StepStatus.SUCCEEDED
    return _state(name, status, total, runs, reason)


def _state(
    name: str, status: StepStatus, total: int, runs: list[queries.ChildRun], reason: str | None = None
) -> StepState:
    counts: dict[str, int] = defaultdict(int)
    for run in runs:
        counts[run.status] += 1
    failed = next((run for run in runs if run.status not in ACTIVE_RUN_STATES and run.status != "succeeded"), None)
    error = None
    if failed is not None:
        which = f"item {failed.item_key}: " if failed.item_key is not None else ""
        error = f"{which}{failed.error or failed.status}"
    return StepState(name, status, total, dict(counts), [run.id for run in runs], error, reason)


def _folder(run: queries.ChildRun) -> str:
    return run.step if run.item_key is None else f"{run.step}/{run.item_key}"


# --- fan-out items ------------------------------------------------------------------------------


def _items_of(session: Session, name: str, step: StepSpec, params: dict[str, Any], inputs: Inputs) -> list[Any] | None:
    if step.foreach is None:
        return None
    if isinstance(step.foreach, list):
        return list(step.foreach)
    kind, _, what = step.foreach.partition(".")
    if kind == "params":
        value = params.get(what)
        if not isinstance(value, list):
            raise InvalidInput(f"step '{name}' fans out over parameter '{what}', which must be a list", field=what)
        items = list(value)  # none: the step has no item to run and succeeds at once
    else:
        chosen = inputs[what]
        row = data_queries.get_version(session, chosen.dataset, chosen.version)
        items = sorted({entry["path"].split("/", 1)[0] for entry in (row.files if row else [])})
    if len(items) > MAX_ITEMS:
        raise InvalidInput(f"step '{name}' fans out over {len(items)} items; at most {MAX_ITEMS}", field=what)
    return items


def _keyed(items: list[Any] | None) -> list[tuple[str | None, Any]]:
    """Each item with the name of its folder: the item itself when every item is a short, plain,
    distinct scalar; its position otherwise."""
    if items is None:
        return [(None, None)]
    names = [str(item) if isinstance(item, str | int | float) and not isinstance(item, bool) else "" for item in items]
    if all(_ITEM_KEY.match(n) for n in names) and len(set(names)) == len(names):
        return list(zip(names, items, strict=True))
    return [(str(index), item) for index, item in enumerate(items)]
