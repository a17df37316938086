"""/api/v1/models: the models of the workspace, and submitting runs of them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Response

from modelrunner.api.deps import PlatformDep
from modelrunner.api.schemas import ModelDetail, ModelSummary, RunDetail, SubmitRequest, SubmitResponse
from modelrunner.engine.submit import SubmitOutcome
from modelrunner.store import queries

router = APIRouter(prefix="/models", tags=["models"])


@router.get("", response_model=list[ModelSummary], summary="List the models of the workspace")
def list_models(platform: PlatformDep) -> list[ModelSummary]:
    return [ModelDetail.of(m) for m in platform.workspace.models()]


@router.get("/{name}", response_model=ModelDetail, summary="A model with its parameter schema and current version")
def get_model(name: str, platform: PlatformDep) -> ModelDetail:
    return ModelDetail.of(platform.workspace.model(name))


@router.post(
    "/{name}/runs",
    response_model=SubmitResponse,
    status_code=201,
    summary="Submit a run",
    responses={
        200: {"description": "Answered from the cache", "model": SubmitResponse},
        201: {"description": "A new run was queued, or an identical run in flight was joined"},
        404: {"description": "Unknown model"},
        409: {"description": "cache=only and nothing is cached"},
        422: {"description": "Invalid parameters; the failing field is named"},
    },
)
def submit_run(name: str, platform: PlatformDep, request: Annotated[SubmitRequest | None, Body()] = None) -> Response:
    """Identical requests (same model version and parameters) are answered from the cache or share
    one execution; `cache` and `max_age` control how. No body runs with every default."""
    request = request or SubmitRequest()
    submission = platform.submit(name, request.params, request.cache, request.max_age)
    run = submission.run
    attempts, outputs = [], submission.outputs
    if submission.outcome == SubmitOutcome.JOINED:
        with platform.database.read() as session:
            attempts = queries.attempts_of(session, run.id)
            outputs = queries.outputs_of(session, run.id)
    detail = RunDetail.of_rows(run, attempts, outputs).model_dump()
    body = SubmitResponse(**detail, submission=submission.outcome)
    # Serialised here: returning the model would make FastAPI validate it a second time.
    status = 200 if submission.outcome == SubmitOutcome.CACHE_HIT else 201
    return Response(body.model_dump_json(), status_code=status, media_type="application/json")
