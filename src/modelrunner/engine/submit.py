"""Submitting a run: answer from the cache, join an identical run in flight, or queue a new one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from modelrunner.artifacts.store import ArtifactStore
from modelrunner.artifacts.uploads import require_stored
from modelrunner.auth.principal import Principal
from modelrunner.clock import utcnow
from modelrunner.engine import input_versions, pipelines
from modelrunner.engine.cache_hit import record_hit
from modelrunner.engine.cache_key import cache_key
from modelrunner.engine.cache_mode import CacheMode
from modelrunner.engine.image_versions import ImageVersions
from modelrunner.engine.pipelines import PipelinePlan
from modelrunner.engine.routing import Route, choose_backend
from modelrunner.engine.run_profile import RunProfile
from modelrunner.engine.states import RunStatus
from modelrunner.engine.step_versions import StepVersions
from modelrunner.engine.transition import create_run, create_runs
from modelrunner.errors import AlreadyExists, Conflict, Forbidden, InvalidInput, ModelrunnerError, NotFound
from modelrunner.spec.file_params import references_in
from modelrunner.spec.model_spec import ModelSpec
from modelrunner.spec.model_version import holds_links, snapshot
from modelrunner.spec.overrides import checked_overrides, overrides_of
from modelrunner.spec.params import validate_params
from modelrunner.spec.workspace import Model, Workspace
from modelrunner.store import queries
from modelrunner.store.database import Database
from modelrunner.store.tables import ModelVersionRow, OutputRow, RunKind, RunRow

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class SubmitOutcome(StrEnum):
    CREATED = "created"
    JOINED = "joined"
    CACHE_HIT = "cache_hit"


@dataclass(frozen=True)
class Submission:
    run: RunRow
    outcome: SubmitOutcome
    outputs: list[OutputRow] = field(default_factory=list)  # a cache hit's, read in the same transaction


@dataclass(frozen=True)
class PreparedRun:
    """A request checked and resolved, ready to be recorded in a transaction of the caller's."""

    model: Model
    params: dict[str, Any]
    cache: CacheMode
    key: str
    chosen: input_versions.Inputs
    acceptable: list[input_versions.Inputs]  # input choices whose cached results answer it
    fresh_after: dt.datetime | None
    max_age: float | None
    origin: str | None
    pipeline: PipelinePlan | None
    route: Route  # the backend a new run goes to, and the rule that chose it
    submitted_by: int | None  # the user asking; None for a schedule, a trigger
    resourced: ModelSpec  # the model's spec with its resource classes filled in
    overrides: Mapping[str, float] = field(default_factory=dict)  # spec/overrides.py; not in the key


@dataclass(frozen=True)
class RunRequest:
    """One run of a batch: what ``Submitter.submit`` takes besides the model and the submitter."""

    params: Any
    cache: CacheMode = CacheMode.USE
    max_age: float | None = None
    inputs: Mapping[str, str] | None = None
    backend: str | None = None
    overrides: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Refusal:
    """Why the request at ``index`` of a batch cannot be submitted."""

    index: int
    error: ModelrunnerError


class BatchRefused(InvalidInput):
    """Requests of a batch that cannot be submitted, so none was; ``refusals`` names each by its
    index, in order."""

    def __init__(self, refusals: list[Refusal]) -> None:
        first = refusals[0]
        super().__init__(
            f"{len(refusals)} run(s) of the batch cannot be submitted, so none was; "
            f"the first, runs.{first.index}: {first.error.message}",
            field=f"runs.{first.index}",
        )
        self.refusals = refusals


# What one request of a batch may be refused for; anything else (a broken modelrunner.yaml, an
# unavailable store) is the batch's, not an item's, and propagates.
_ITEM_ERRORS = (InvalidInput, Forbidden, Conflict, NotFound)


class Submitter:
    """Turns requests into runs. Safe to call from many threads and many processes at once.

    ``publish`` false leaves out the pipeline steps marked ``publish`` (a test profile);
    ``profile`` is the server's profile, part of every cache key and given to the runs' models.
    """

    def __init__(
        self,
        database: Database,
        workspace: Workspace,
        artifacts: ArtifactStore,
        *,
        publish: bool = True,
        profile: RunProfile | None = None,
    ):
        self._database = database
        self._workspace = workspace
        self._artifacts = artifacts
        self._publish = publish
        self._profile = profile.as_json() if profile is not None else None
        self._recorded_versions: set[tuple[str, str]] = set()
        self._images = ImageVersions(workspace)
        self._step_versions = StepVersions()

    def submit(
        self,
        model_name: str,
        params: Any,
        cache: CacheMode = CacheMode.USE,
        max_age: float | None = None,
        inputs: Mapping[str, str] | None = None,
        *,
        origin: str | None = None,
        refresh_steps: Collection[str] | None = None,
        rerun_of: int | None = None,
        submitter: Principal | None = None,
        backend: str | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Submission:
        """Raises NotFound (model), SpecError (broken model.yaml or modelrunner.yaml, a routing
        rule naming an unknown backend), InvalidInput (params, a pinned input version, an unknown
        ``backend``), Forbidden (a ``backend`` the submitter may not choose), Conflict
        (``cache=only`` with nothing cached, an input dataset with no version yet). Nothing is
        written when it raises.

        ``inputs`` pins input versions (a unique prefix is enough); the others take their
        dataset's newest. With ``max_age``, a result computed on data no older than that is
        accepted (for a model without inputs: a result no older than that). ``origin`` says what
        asked (a schedule, a trigger). For a pipeline, ``refresh_steps`` are computed again
        whatever the cache holds (all of them with ``cache=refresh``).

        A new run goes to the backend that ``routing.choose_backend`` picks for ``submitter``
        (None: a schedule, a trigger) and the requested ``backend``; a joined run stays where it
        is, and a cache hit shows the backend of the run that computed the result.
        """
        prepared = self.prepare(
            model_name,
            params,
            cache,
            max_age,
            inputs,
            origin=origin,
            refresh_steps=refresh_steps,
            rerun_of=rerun_of,
            submitter=submitter,
            backend=backend,
            overrides=overrides,
        )
        with self._database.write() as session:
            return self.record(session, prepared)

    def prepare(
        self,
        model_name: str,
        params: Any,
        cache: CacheMode = CacheMode.USE,
        max_age: float | None = None,
        inputs: Mapping[str, str] | None = None,
        *,
        origin: str | None = None,
        refresh_steps: Collection[str] | None = None,
        rerun_of: int | None = None,
        submitter: Principal | None = None,
        backend: str | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> PreparedRun:
        """Everything ``submit`` checks, without writing a run: ``record`` writes it. ``overrides``
        (InvalidInput past the model's ``overridable:``) go with a new run, not into its key."""
        model = self._images.model(model_name)  # an image model's version covers its image's digest
        validated = validate_params(model.spec.params, params)
        kept_overrides = checked_overrides(model.name, model.spec.overridable, overrides)
        route = choose_backend(self._workspace.spec(), model.spec, submitter, backend)
        resourced = model.spec.in_classes(self._workspace.resource_classes())
        now = utcnow()
        chosen, acceptable = self._choose_inputs(model, inputs or {}, max_age, now)
        self._check_data_params(model.spec, validated, chosen)
        plan = None
        if model.spec.is_pipeline:
            refresh = set(model.spec.steps) if cache == CacheMode.REFRESH else set(refresh_steps or ())
            with self._database.read() as session:
                plan = pipelines.plan(
                    session,
                    model.spec,
                    validated,
                    chosen,
                    refresh,
                    self._publish,
                    rerun_of,
                    self._profile,
                    self._step_versions.of(model),
                )
        key = cache_key(
            model.name,
            model.version,
            validated,
            input_versions=input_versions.versions_of(chosen),
            skipped_steps=plan.skip if plan else None,
            profile=self._profile,
        )
        if cache != CacheMode.ONLY:
            self._record_version(model)
        fresh_after = now - dt.timedelta(seconds=max_age) if max_age is not None and not model.spec.inputs else None
        submitted_by = submitter.user_id if submitter is not None else None
        return PreparedRun(
            model,
            validated,
            cache,
            key,
            chosen,
            acceptable,
            fresh_after,
            max_age,
            origin,
            plan,
            route,
            submitted_by,
            resourced,
            kept_overrides,
        )

    def submit_many(
        self,
        model_name: str,
        requests: Sequence[RunRequest],
        *,
        submitter: Principal | None = None,
        check_params: Callable[[Any], None] | None = None,
    ) -> list[Submission]:
        """``submit`` for each request, all or none: each request's submission, in order.

        Every request is checked first (``check_params`` too, on its parameters); when any fails,
        BatchRefused lists every failing one by index and nothing is written. Then the runs are
        recorded in one write transaction, the new ones inserted together; a request identical to
        an earlier one of the batch joins that run. ``cache=only`` requests with nothing cached
        are found while recording, where the store decides, so BatchRefused lists them only once
        every request passed the other checks. Raises NotFound (model) and SpecError (a broken
        model.yaml or modelrunner.yaml) for the whole batch."""
        self._workspace.model(model_name)  # an unknown or broken model is the batch's error, not each item's
        prepared: list[PreparedRun] = []
        refusals: list[Refusal] = []
        for index, request in enumerate(requests):
            try:
                if check_params is not None:
                    check_params(request.params)
                prepared.append(
                    self.prepare(
                        model_name,
                        request.params,
                        request.cache,
                        request.max_age,
                        request.inputs,
                        submitter=submitter,
                        backend=request.backend,
                        overrides=request.overrides,
                    )
                )
            except _ITEM_ERRORS as exc:
                refusals.append(Refusal(index, exc))
        if refusals:
            raise BatchRefused(refusals)
        with self._database.write() as session:
            return self.record_many(session, prepared)

    def record(self, session: Session, prepared: PreparedRun) -> Submission:
        """Answer from the cache, join an identical run in flight, or queue a new run (a pipeline
        starts its first steps), in the caller's write transaction."""
        now = utcnow()
        hit = self._cache_hit(session, prepared, now)
        if hit is not None:
            return hit
        self._refuse_uncached(prepared)
        active = queries.active_run_for_key(session, prepared.key)
        if active is not None:
            return Submission(active, SubmitOutcome.JOINED)
        return self._create(session, prepared, self._new_run(prepared, now))

    def record_many(self, session: Session, prepared: Sequence[PreparedRun]) -> list[Submission]:
        """``record`` for each request, in order, in the caller's write transaction, with the new
        runs inserted together. A request identical to an earlier one of the batch joins its
        run. BatchRefused (nothing is recorded: the caller's transaction must roll back) lists
        the ``cache=only`` requests with nothing cached."""
        now = utcnow()
        answers: dict[int, Submission] = {}
        pending: list[tuple[int, PreparedRun, RunRow]] = []  # new runs not inserted yet
        new_by_key: dict[str, int] = {}  # cache key -> index of the request whose new run it is
        joiners: list[tuple[int, int]] = []  # (index, index of the new run of the batch it joins)
        refusals: list[Refusal] = []
        for index, request in enumerate(prepared):
            hit = self._cache_hit(session, request, now)
            if hit is not None:
                # Inserted now, after the new runs asked for before it: ids follow the batch's order.
                answers.update(self._create_all(session, pending))
                pending.clear()
                answers[index] = hit
                continue
            try:
                self._refuse_uncached(request)
            except Conflict as exc:
                refusals.append(Refusal(index, exc))
                continue
            if request.key in new_by_key:
                joiners.append((index, new_by_key[request.key]))
                continue
            active = queries.active_run_for_key(session, request.key)
            if active is not None:
                answers[index] = Submission(active, SubmitOutcome.JOINED)
                continue
            new_by_key[request.key] = index
            pending.append((index, request, self._new_run(request, now)))
        if refusals:
            raise BatchRefused(refusals)
        answers.update(self._create_all(session, pending))
        for index, first in joiners:
            answers[index] = Submission(answers[first].run, SubmitOutcome.JOINED)
        return [answers[index] for index in range(len(prepared))]

    def _cache_hit(self, session: Session, prepared: PreparedRun, now: dt.datetime) -> Submission | None:
        """The request answered by a cached result (recorded as a cache hit), if one is acceptable."""
        if prepared.cache == CacheMode.REFRESH or (prepared.pipeline and prepared.pipeline.refresh):
            return None
        model = prepared.model
        for choice in prepared.acceptable:
            choice_key = cache_key(
                model.name,
                model.version,
                prepared.params,
                input_versions=input_versions.versions_of(choice),
                skipped_steps=prepared.pipeline.skip if prepared.pipeline else None,
                profile=self._profile,
            )
            cached = queries.latest_computed_success(session, choice_key, prepared.fresh_after)
            if cached is not None:
                # Computed nowhere new: the hit shows where its result was computed.
                hit = record_hit(
                    session,
                    cached,
                    now,
                    origin=prepared.origin,
                    submitted_by=prepared.submitted_by,
                    backend=cached.backend,
                    backend_rule=cached.backend_rule,
                )
                return Submission(hit, SubmitOutcome.CACHE_HIT, queries.outputs_of(session, hit.id))
        return None

    @staticmethod
    def _refuse_uncached(prepared: PreparedRun) -> None:
        """Conflict for ``cache=only``, once no cached result answered the request."""
        if prepared.cache == CacheMode.ONLY:
            raise Conflict(
                f"no cached result of '{prepared.model.name}' for these parameters"
                + (f" newer than {prepared.max_age:g} s" if prepared.max_age is not None else ""),
                cache_key=prepared.key,
            )

    def _new_run(self, prepared: PreparedRun, now: dt.datetime) -> RunRow:
        pipeline = prepared.pipeline
        return RunRow(
            kind=RunKind.PIPELINE if pipeline else RunKind.RUN,
            model_name=prepared.model.name,
            model_version=prepared.model.version,
            params=prepared.params,
            inputs={name: version.as_json() for name, version in prepared.chosen.items()},
            cache_key=prepared.key,
            # A pipeline is never executed itself: it runs from the start, through its steps.
            status=(RunStatus.RUNNING if pipeline else RunStatus.QUEUED).value,
            cache_hit=False,
            slots=prepared.resourced.resources.slots,
            # A plain run keeps the profile it is computed under: its model sees it (run_profile).
            plan=_with_overrides(
                pipeline.as_json() if pipeline else ({"profile": self._profile} if self._profile else None),
                prepared.overrides,
            ),
            origin=prepared.origin,
            submitted_by=prepared.submitted_by,
            backend=prepared.route.backend,
            backend_rule=prepared.route.rule,
            created_at=now,
            started_at=now if pipeline else None,
        )

    def _create(self, session: Session, prepared: PreparedRun, run: RunRow) -> Submission:
        """Insert a new run, or join the identical run a concurrent submit inserted first."""
        try:
            with session.begin_nested():
                create_run(session, run)
        except AlreadyExists:
            # A concurrent submit (PostgreSQL) queued the same key first: join it.
            active = queries.active_run_for_key(session, prepared.key)
            if active is None:
                raise
            return Submission(active, SubmitOutcome.JOINED)
        if prepared.pipeline:
            pipelines.advance(session, run.id, prepared.resourced)
        return Submission(run, SubmitOutcome.CREATED)

    def _create_all(
        self, session: Session, pending: Sequence[tuple[int, PreparedRun, RunRow]]
    ) -> dict[int, Submission]:
        """Insert new runs together; their submissions by request index."""
        if not pending:
            return {}
        try:
            with session.begin_nested():
                create_runs(session, [run for _, _, run in pending])
        except AlreadyExists:
            # A concurrent submit (PostgreSQL) queued one of these keys first: one by one, so
            # that each of those joins the run that won.
            return {index: self._create(session, prepared, run) for index, prepared, run in pending}
        for _, prepared, run in pending:
            if prepared.pipeline:
                pipelines.advance(session, run.id, prepared.resourced)
        return {index: Submission(run, SubmitOutcome.CREATED) for index, _, run in pending}

    def rerun(
        self,
        run_id: int,
        *,
        from_step: str | None = None,
        only_step: str | None = None,
        submitter: Principal | None = None,
    ) -> Submission:
        """Compute a run again with its parameters and data versions, on the model's current
        version. For a pipeline run, ``from_step`` recomputes that step and everything downstream,
        ``only_step`` that step alone, neither every step; the other steps reuse their results.
        A rerun is a new request of ``submitter``'s, routed as theirs."""
        with self._database.read() as session:
            run = queries.get_run(session, run_id)
        if run is None:
            raise NotFound(f"unknown run {run_id}", run=run_id)
        if from_step is not None and only_step is not None:
            raise InvalidInput("give `from` or `only`, not both", field="from")
        if run.kind == RunKind.STEP:
            raise InvalidInput(
                f"run {run_id} is step '{run.step}' of pipeline run {run.parent_id}; "
                f"rerun the pipeline: modelrunner runs rerun {run.parent_id} --only {run.step}",
                field="run",
            )
        model = self._workspace.model(run.model_name)
        pins = {name: chosen["version"] for name, chosen in (run.inputs or {}).items()}
        origin = f"rerun:{run_id}"
        if not model.spec.is_pipeline:
            if from_step is not None or only_step is not None:
                raise InvalidInput(f"model '{model.name}' has no steps; rerun it without `from`/`only`", field="from")
            return self.submit(
                model.name,
                run.params,
                CacheMode.REFRESH,
                inputs=pins,
                origin=origin,
                submitter=submitter,
                overrides=overrides_of(run.plan),  # a rerun keeps the run's own timeout
            )
        chosen_step = from_step or only_step
        if chosen_step is not None and chosen_step not in model.spec.steps:
            steps = ", ".join(model.spec.steps)
            raise InvalidInput(f"model '{model.name}' has no step '{chosen_step}' (its steps: {steps})", field="from")
        if from_step is not None:
            refresh = pipelines.downstream_of(model.spec, from_step)
        elif only_step is not None:
            refresh = {only_step}
        else:
            refresh = set(model.spec.steps)
        return self.submit(
            model.name,
            run.params,
            inputs=pins,
            origin=origin,
            refresh_steps=refresh,
            rerun_of=run_id,
            overrides=overrides_of(run.plan),
            submitter=submitter,
        )

    def _check_data_params(self, spec: ModelSpec, params: dict[str, Any], chosen: input_versions.Inputs) -> None:
        """InvalidInput for a file parameter naming no stored upload, or for a folder input's
        parameter naming a folder its data version lacks (spec/file_params.py, input_folders.py)."""
        require_stored(self._artifacts, references_in(spec.params, params).items())
        if spec.input_folders:
            with self._database.read() as session:
                input_versions.check_folders(session, spec, params, chosen)

    def find_cached(
        self, model_name: str, params: Any, max_age: float | None, inputs: Mapping[str, str] | None = None
    ) -> tuple[RunRow, list[OutputRow]] | None:
        """The succeeded run that answers this request on the newest data, trying data versions
        from newest to oldest; writes nothing. With ``max_age``, only results computed on data (or,
        for a model without inputs, finished) no older than that count."""
        model = self._images.model(model_name)
        validated = validate_params(model.spec.params, params)
        now = utcnow()
        oldest = now - dt.timedelta(seconds=max_age) if max_age is not None else None
        input_versions.check_pins(model.spec, inputs or {})
        # A pipeline run that leaves steps out is keyed with them (see prepare).
        skipped = pipelines.left_out(model.spec, validated, self._publish) if model.spec.is_pipeline else {}
        with self._database.read() as session:
            if model.spec.inputs:
                choices = input_versions.recent(session, model.spec, inputs or {}, oldest or _EPOCH)
                fresh_after = None
            else:
                choices, fresh_after = [{}], oldest
            for choice in choices:
                key = cache_key(
                    model.name,
                    model.version,
                    validated,
                    input_versions=input_versions.versions_of(choice),
                    skipped_steps=list(skipped),
                    profile=self._profile,
                )
                found = queries.latest_computed_success(session, key, fresh_after)
                if found is not None:
                    return found, queries.outputs_of(session, found.id)
        return None

    def _choose_inputs(
        self, model: Model, pins: Mapping[str, str], max_age: float | None, now: dt.datetime
    ) -> tuple[input_versions.Inputs, list[input_versions.Inputs]]:
        """The versions a new run would use, and the choices whose cached results are acceptable
        (newest data first)."""
        if not model.spec.inputs:
            input_versions.check_pins(model.spec, pins)
            return {}, [{}]
        with self._database.read() as session:
            chosen = input_versions.resolve(session, model.spec, pins)
            if max_age is None:
                return chosen, [chosen]
            recent = input_versions.recent(session, model.spec, pins, now - dt.timedelta(seconds=max_age))
        # No data that recent: the newest data's result is the freshest there can be, so it is
        # used rather than computed again on the same data.
        return chosen, recent or [chosen]

    def _record_version(self, model: Model) -> None:
        """Store the model's spec and a snapshot of its folder, once per version."""
        identity = (model.name, model.version)
        if identity in self._recorded_versions:
            return
        with self._database.read() as session:
            recorded = queries.get_model_version(session, *identity)
        key = f"models/{model.name}/{model.version}.tar.gz"
        if recorded is not None and holds_links(self._artifacts.get_bytes(recorded.snapshot_uri)):
            # Recorded before links were followed, with a link no attempt can unpack: the
            # content is the version's, so its snapshot is made again, where it was.
            self._artifacts.put_bytes(key, snapshot(model.folder))
        if recorded is None:
            uri = self._artifacts.put_bytes(key, snapshot(model.folder))
            try:
                with self._database.write() as session:
                    queries.add_model_version(
                        session,
                        ModelVersionRow(
                            name=model.name,
                            version=model.version,
                            spec=model.spec.model_dump(mode="json"),
                            snapshot_uri=uri,
                            created_at=utcnow(),
                        ),
                    )
            except AlreadyExists:
                pass  # another submit recorded the same version first; the content is identical
        self._recorded_versions.add(identity)


def _with_overrides(plan: dict[str, Any] | None, overrides: Mapping[str, float]) -> dict[str, Any] | None:
    """A new run's plan with its overrides, which its runner (a pipeline's: each step's) applies."""
    return {**(plan or {}), "overrides": dict(overrides)} if overrides else plan
