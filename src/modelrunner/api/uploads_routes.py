"""POST /api/v1/models/{name}/runs/upload: submit a run with files for its file parameters.

The body is multipart/form-data: a ``request`` field with the JSON of a single submit (params,
cache, max_age, inputs, backend; all optional) and one file field per file parameter, named after
it. Each file is streamed into the artifact store (spec/file_params.py says how a run names it)
and the run is then submitted as ``POST /models/{name}/runs`` would submit it.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from modelrunner.api.deps import AccessDep, PlatformDep
from modelrunner.api.errors import INVALID_RESPONSE
from modelrunner.api.models_routes import _answer
from modelrunner.api.schemas import SubmitRequest, SubmitResponse
from modelrunner.artifacts.uploads import UploadTooLarge, store_upload
from modelrunner.engine.submit import SubmitOutcome
from modelrunner.errors import InvalidInput, Problem
from modelrunner.spec.access_spec import Level
from modelrunner.spec.file_params import file_params

router = APIRouter(prefix="/models", tags=["models"])

_MAX_FIELDS = 200
_EXTRA_FILES = 10  # files for no file parameter are read up to this many, to be named in the 422


@router.post(
    "/{name}/runs/upload",
    response_model=SubmitResponse,
    status_code=201,
    summary="Submit a run with uploaded files for its file parameters",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "request": {"type": "string", "description": "The JSON body of a single submit"},
                        },
                        "additionalProperties": {"type": "string", "format": "binary"},
                    }
                }
            },
        }
    },
    responses={
        200: {"description": "Answered from the cache (the same files and parameters ran before)"},
        403: {"description": "The caller lacks `run` on the model"},
        404: {"description": "Unknown model"},
        413: {"description": "A file (or the body) is larger than max_upload_bytes"},
        422: {**INVALID_RESPONSE, "description": "Invalid request, parameters, or a file for no file parameter"},
    },
)
async def submit_with_files(name: str, request: Request, platform: PlatformDep, access: AccessDep) -> Response:
    """Each file field must be named after a parameter the model declares with `format: file`;
    its content's sha256 and its file name (made safe) become the parameter's value, so the same
    file uploaded again is answered from the cache. The model reads it from
    `MODELRUNNER_INPUTS/params/<param>/<file name>`. Needs `run` on the model."""
    access.require(name, Level.RUN, "submitting runs")
    model = platform.workspace.model(name)
    declared = file_params(model.spec.params)
    settings = platform.settings
    async with request.form(max_files=len(declared) + _EXTRA_FILES, max_fields=_MAX_FIELDS) as form:
        submit = _submit_request(form.get("request"))
        params: dict[str, Any] = dict(submit.params)
        for field, value in form.multi_items():
            if not isinstance(value, UploadFile):
                if field != "request":
                    raise _invalid(field, "is not a field of this request (a `request` and files)")
                continue
            if field not in declared:
                shown = ", ".join(declared) or "none"
                what = f"is not a file parameter of this model (its file parameters: {shown})"
                raise _invalid(f"params.{field}", what)
            try:
                reference = await run_in_threadpool(
                    store_upload,
                    platform.artifacts,
                    value.file,
                    value.filename or field,
                    max_bytes=settings.max_upload_bytes,
                    setting="max_upload_bytes",
                )
            except UploadTooLarge as exc:
                raise HTTPException(413, exc.message) from exc
            params[field] = reference.value
    submission = await run_in_threadpool(
        platform.submit,
        name,
        params,
        submit.cache,
        submit.max_age,
        submit.inputs,
        submitter=access.principal,
        backend=submit.backend,
        overrides=submit.overrides,
    )
    body = await run_in_threadpool(_answer, platform, access, submission)
    status = 200 if submission.outcome == SubmitOutcome.CACHE_HIT else 201
    return Response(body.model_dump_json(), status_code=status, media_type="application/json")


def _submit_request(raw: Any) -> SubmitRequest:
    if raw is None:
        return SubmitRequest()
    if not isinstance(raw, str):
        raise _invalid("request", "must be a form field holding JSON, not a file")
    try:
        return SubmitRequest.model_validate(json.loads(raw) if raw.strip() else {})
    except json.JSONDecodeError as exc:
        raise _invalid("request", f"is not JSON: {exc.msg} at character {exc.pos}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise _invalid(f"request.{where}" if where else "request", first["msg"]) from exc


def _invalid(field: str, what: str) -> InvalidInput:
    return InvalidInput.of([Problem(field, what)])
