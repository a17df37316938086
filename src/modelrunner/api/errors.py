"""The one place where domain errors become HTTP responses."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from modelrunner.api.body_limits import BodyTooLarge
from modelrunner.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    ModelrunnerError,
    NotFound,
    SpecError,
    StoreError,
    Unauthenticated,
)

_STATUS: list[tuple[type[ModelrunnerError], int]] = [
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (InvalidInput, 422),
    (Conflict, 409),
    (SpecError, 422),
    (StoreError, 503),
]


def status_of(exc: ModelrunnerError) -> int:
    """The HTTP status of a domain error (the web pages use it too)."""
    return next((code for cls, code in _STATUS if isinstance(exc, cls)), 400)


class LocatedError(BaseModel):
    loc: list[str | int] = Field(description="Where: the request part (body, query), then the field's path")
    msg: str = Field(description="What is wrong, starting with the field's dotted path")
    type: str = Field(description="invalid_params for a parameter; FastAPI's own kinds for the request's shape")


class FieldError(BaseModel):
    field: str = Field(description="The field's dotted path, e.g. `params.rate` or `runs.2.params.n`")
    message: str = Field(description="What is wrong with it, e.g. `is required`")


class InvalidRequestBody(BaseModel):
    """Every problem of a request at once, in two forms: FastAPI's located ones and plain pairs."""

    detail: list[LocatedError] = Field(description="Every problem, located as FastAPI locates its own")
    errors: list[FieldError] = Field(description="The same problems as {field, message}, in the same order")


INVALID_RESPONSE: dict[str, Any] = {"model": InvalidRequestBody}
"""``responses[422]`` of a route whose 422 lists every problem (add a ``description``)."""


def invalid_body(detail: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The body of a 422 for a request that breaks a schema: FastAPI's ``detail`` (each problem
    located: ``loc``, ``msg``, ``type``) and ``errors``, the same problems as ``{field, message}``,
    whether FastAPI or modelrunner found them. (A broken model.yaml is a 422 too, with a string
    ``detail`` and its ``problems``.)"""
    encoded = jsonable_encoder(detail)
    return {"detail": encoded, "errors": [_error_of(item) for item in encoded]}


def invalid_input_detail(exc: InvalidInput, loc_prefix: Sequence[str | int] = ()) -> list[dict[str, Any]]:
    """One ``detail`` item per problem of ``exc``, located under ``loc_prefix`` (default: the
    request part it came in, ``body`` unless the error says otherwise)."""
    prefix = list(loc_prefix) or [str(exc.details.get("location", "body"))]
    return [
        {
            "loc": [*prefix, *(problem.field.split(".") if problem.field else ())],
            "msg": str(problem),
            "type": "invalid_params",
        }
        for problem in exc.problems
    ]


def _error_of(item: dict[str, Any]) -> dict[str, str]:
    loc = [str(part) for part in item.get("loc", [])]
    field = ".".join(loc[1:] if loc and loc[0] in _LOCATIONS else loc)
    message = str(item.get("msg", "is not valid"))
    # A domain error's message starts with its field (in a batch: the field within the item).
    named, sep, rest = message.partition(": ")
    if sep and (field == named or field.endswith(f".{named}")):
        message = rest
    return {"field": field, "message": message}


_LOCATIONS = {"body", "query", "path", "header", "cookie"}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BodyTooLarge)
    async def _body_too_large(_request: Request, exc: BodyTooLarge) -> JSONResponse:
        body = {"detail": exc.detail, "limit": exc.limit.setting, "max_bytes": exc.limit.max_bytes}
        return JSONResponse(body, 413)

    @app.exception_handler(RequestValidationError)
    async def _request_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(invalid_body(exc.errors()), 422)

    @app.exception_handler(ModelrunnerError)
    async def _domain_error(_request: Request, exc: ModelrunnerError) -> JSONResponse:
        status = status_of(exc)
        if isinstance(exc, InvalidInput):
            # The same shape FastAPI gives its own validation errors, so clients parse one form.
            return JSONResponse(invalid_body(invalid_input_detail(exc)), status)
        body: dict[str, object] = {"detail": exc.message}
        if isinstance(exc, SpecError) and exc.details.get("problems"):
            body["problems"] = exc.details["problems"]
        # RFC 6750: a 401 names the scheme the client should use.
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(body, status, headers=headers)
