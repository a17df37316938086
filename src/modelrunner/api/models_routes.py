"""/api/v1/models: the models of the workspace, and submitting runs of them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request, Response
from fastapi.exceptions import RequestValidationError

from modelrunner.api.deps import AccessDep, PlatformDep
from modelrunner.api.errors import INVALID_RESPONSE, invalid_input_detail, status_of
from modelrunner.api.schemas import (
    BatchSubmitRequest,
    BatchSubmitResponse,
    ModelDetail,
    ModelSummary,
    RunDetail,
    SubmitRequest,
    SubmitResponse,
)
from modelrunner.auth.access import Access
from modelrunner.auth.run_access import RunPermission
from modelrunner.engine import run_reads
from modelrunner.engine.run_reads import RunBundle
from modelrunner.engine.submit import BatchRefused, Refusal, RunRequest, Submission, SubmitOutcome
from modelrunner.errors import InvalidInput, NotFound
from modelrunner.platform import Platform
from modelrunner.spec.access_spec import Level
from modelrunner.spec.duration import HINT, parse_duration
from modelrunner.spec.params import parse_cli_value

_INPUT_PREFIX = "input."
# A refused batch item's ``type``; "invalid_params" as a single submit's 422 says it.
_REFUSAL_TYPES = {403: "forbidden", 404: "not_found", 409: "conflict", 422: "invalid_params"}

router = APIRouter(prefix="/models", tags=["models"])


@router.get("", response_model=list[ModelSummary], summary="List the models of the workspace")
def list_models(platform: PlatformDep, access: AccessDep) -> list[ModelSummary]:
    """The models the caller may view."""
    access.require_listing("listing models")
    classes = platform.workspace.resource_classes()
    return [ModelDetail.of(m, classes) for m in platform.workspace.models() if access.may(m.name, Level.VIEW)]


@router.get("/{name}", response_model=ModelDetail, summary="A model with its parameter schema and current version")
def get_model(name: str, platform: PlatformDep, access: AccessDep) -> ModelDetail:
    access.require(name, Level.VIEW, "viewing a model")
    return ModelDetail.of(platform.workspace.model(name), platform.workspace.resource_classes())


@router.post(
    "/{name}/runs",
    response_model=SubmitResponse,
    status_code=201,
    summary="Submit a run",
    responses={
        200: {"description": "Answered from the cache", "model": SubmitResponse},
        201: {"description": "A new run was queued, or an identical run in flight was joined"},
        401: {"description": "No valid token, and anonymous callers may not run the model"},
        403: {"description": "The caller lacks `run` on the model, or may not choose the requested backend"},
        404: {"description": "Unknown model"},
        409: {"description": "cache=only and nothing is cached, or an input's dataset has no version yet"},
        422: {
            **INVALID_RESPONSE,
            "description": "Invalid parameters, max_age, input version or backend: every problem with the "
            "parameters at once, each naming its field (`params.<name>`); nothing was submitted",
        },
    },
)
def submit_run(
    name: str, platform: PlatformDep, access: AccessDep, request: Annotated[SubmitRequest | None, Body()] = None
) -> Response:
    """Identical requests (same model version, parameters and input data versions) are answered
    from the cache or share one execution; `cache` and `max_age` control how. Each input uses its
    dataset's newest version unless `inputs` pins one. No body runs with every default. Needs
    `run` on the model. A new run goes to the requested `backend`, else where routing sends the
    caller's runs; a joined run stays on its backend."""
    access.require(name, Level.RUN, "submitting runs")
    request = request or SubmitRequest()
    submission = platform.submit(
        name,
        request.params,
        request.cache,
        request.max_age,
        request.inputs,
        submitter=access.principal,
        backend=request.backend,
        overrides=request.overrides,
    )
    body = _answer(platform, access, submission)
    # Serialised here: returning the model would make FastAPI validate it a second time.
    status = 200 if submission.outcome == SubmitOutcome.CACHE_HIT else 201
    return Response(body.model_dump_json(), status_code=status, media_type="application/json")


@router.post(
    "/{name}/runs/batch",
    response_model=BatchSubmitResponse,
    status_code=201,
    summary="Submit many runs at once",
    responses={
        200: {"description": "Every run was answered from the cache", "model": BatchSubmitResponse},
        201: {"description": "At least one run was queued, or joined an identical run in flight"},
        401: {"description": "No valid token, and anonymous callers may not run the model"},
        403: {"description": "The caller lacks `run` on the model; nothing was submitted"},
        404: {"description": "Unknown model"},
        413: {"description": "The body is larger than the server's max_body_bytes"},
        422: {
            **INVALID_RESPONSE,
            "description": "Nothing was submitted: more runs than the server's max_batch_runs (`type` too_long, "
            "`ctx` names the setting and its value), or some runs cannot be submitted; `detail` lists every "
            "problem of every one, `loc` [body, runs, INDEX, field...] (`errors`: field `runs.INDEX.field...`), "
            "with the `status` a single submit would have answered (403 a backend the caller may not choose, "
            "409 cache=only with nothing cached: listed once no item has another problem, 422 invalid input)",
        },
    },
)
def submit_runs(name: str, platform: PlatformDep, access: AccessDep, request: BatchSubmitRequest) -> Response:
    """Submit runs of one model together, all or none: each item is the body of a single submit
    and is answered as that would answer it, in order. Every item is checked before anything is
    recorded; if any cannot be submitted, the batch is refused (422) naming each by its index, so
    a script never half-submits. An item identical to an earlier one of the batch joins its run.
    Needs `run` on the model."""
    access.require(name, Level.RUN, "submitting runs")
    limit = platform.settings.max_batch_runs
    if len(request.runs) > limit:
        message = (
            f"a batch holds at most {limit} runs (max_batch_runs, MODELRUNNER_MAX_BATCH_RUNS); "
            f"this one has {len(request.runs)}: split it"
        )
        ctx = {"max_length": limit, "setting": "max_batch_runs"}
        raise RequestValidationError([{"type": "too_long", "loc": ("body", "runs"), "msg": message, "ctx": ctx}])
    requests = [RunRequest(r.params, r.cache, r.max_age, r.inputs, r.backend, r.overrides) for r in request.runs]
    try:
        submissions = platform.submit_many(name, requests, submitter=access.principal)
    except BatchRefused as exc:
        raise RequestValidationError(
            [entry for refusal in exc.refusals for entry in _refusal_entries(refusal)]
        ) from exc
    joined: dict[int, SubmitResponse] = {}  # many items may join one run: read it once
    answers = []
    for submission in submissions:
        if submission.outcome == SubmitOutcome.JOINED:
            if submission.run.id not in joined:
                joined[submission.run.id] = _answer(platform, access, submission)
            answers.append(joined[submission.run.id])
        else:
            answers.append(_answer(platform, access, submission))
    body = BatchSubmitResponse(runs=answers)
    status = 200 if all(s.outcome == SubmitOutcome.CACHE_HIT for s in submissions) else 201
    return Response(body.model_dump_json(), status_code=status, media_type="application/json")


def _answer(platform: Platform, access: Access, submission: Submission) -> SubmitResponse:
    """A submission as the API answers it."""
    run = submission.run
    if submission.outcome == SubmitOutcome.JOINED:
        # Someone else's run, already going: as it is now. The caller may run the model, so view it.
        bundle = run_reads.run_detail(platform, RunPermission(run.id, access, Level.VIEW))
    else:
        principal = access.principal
        submitter = principal.name if principal.user_id is not None else None
        bundle = RunBundle(run, [], submission.outputs, submitter, None)
    detail = RunDetail.of_bundle(bundle).model_dump()
    return SubmitResponse(**detail, submission=submission.outcome)


def _refusal_entries(refusal: Refusal) -> list[dict[str, Any]]:
    """A refused item of a batch in the shape of validation errors, one for each of its problems,
    with the status a single submit would have answered it with."""
    error = refusal.error
    status = status_of(error)
    kind = _REFUSAL_TYPES.get(status, "refused")
    if isinstance(error, InvalidInput):
        entries = invalid_input_detail(error, ("body", "runs", refusal.index))
    else:
        field = error.details.get("field")
        loc = ("body", "runs", refusal.index, *(str(field).split(".") if field else ()))
        entries = [{"loc": loc, "msg": error.message}]
    return [{**entry, "type": kind, "status": status} for entry in entries]


@router.get(
    "/{name}/results",
    response_model=RunDetail,
    summary="The newest cached result for these parameters",
    responses={
        200: {"description": "The succeeded run that computed the result, with its outputs"},
        404: {"description": "Unknown model, or no result matches"},
        422: {
            **INVALID_RESPONSE,
            "description": "Unknown or invalid parameters (every one, each named), a bad max_age or input version",
        },
    },
    openapi_extra={
        "parameters": [
            {
                "name": "max_age",
                "in": "query",
                "required": False,
                "description": "Only results computed on data no older than this (for a model without inputs: "
                "results no older than this); seconds or a duration such as '30m', '2d'",
                "schema": {"type": "string"},
            },
            {
                "name": "input.<name>",
                "in": "query",
                "required": False,
                "description": "Pin an input to a data version (a unique prefix of at least 4 characters)",
                "schema": {"type": "string"},
            },
            {
                "name": "<parameter>",
                "in": "query",
                "required": False,
                "description": "A model parameter, typed by the model's schema as `-p` is on the command line; "
                "undeclared parameters are refused",
                "schema": {"type": "string"},
            },
        ]
    },
)
def find_result(name: str, request: Request, platform: PlatformDep, access: AccessDep) -> RunDetail:
    """Looks up, computes nothing: the succeeded run for these parameters on the newest data that
    has a result, trying data versions from newest to oldest. Parameters left out take their
    defaults, exactly as on submit."""
    access.require(name, Level.VIEW, "reading results")
    model = platform.workspace.model(name)
    schema = model.spec.params
    params: dict[str, Any] = {}
    pins: dict[str, str] = {}
    max_age: float | None = None
    max_age_text = ""
    seen: set[str] = set()
    for key, value in request.query_params.multi_items():
        if key in seen:
            raise InvalidInput(f"{key}: given more than once", field=key, location="query")
        seen.add(key)
        if key == "max_age":
            max_age, max_age_text = _duration(value), value
        elif key.startswith(_INPUT_PREFIX):
            pins[key.removeprefix(_INPUT_PREFIX)] = value
        else:
            params[key] = parse_cli_value(schema, key, value)
    try:
        found = platform.submitter.find_cached(name, params, max_age, pins)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, problems=exc.problems, **{**exc.details, "location": "query"}) from exc
    if found is None:
        within = f" within max_age={max_age_text}" if max_age is not None else ""
        raise NotFound(f"no result of '{name}' for these parameters{within}", model=name)
    run, _ = found
    return RunDetail.of_bundle(run_reads.run_detail(platform, RunPermission(run.id, access, Level.VIEW)))


def _duration(value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise InvalidInput(f"max_age: {value!r} is not valid; {HINT}", field="max_age", location="query") from exc
