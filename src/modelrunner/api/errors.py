"""The one place where domain errors become HTTP responses."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

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


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BodyTooLarge)
    async def _body_too_large(_request: Request, exc: BodyTooLarge) -> JSONResponse:
        body = {"detail": exc.detail, "limit": exc.limit.setting, "max_bytes": exc.limit.max_bytes}
        return JSONResponse(body, 413)

    @app.exception_handler(ModelrunnerError)
    async def _domain_error(_request: Request, exc: ModelrunnerError) -> JSONResponse:
        status = status_of(exc)
        if isinstance(exc, InvalidInput):
            # The same shape FastAPI gives its own validation errors, so clients parse one form.
            field = str(exc.details.get("field", "params"))
            loc = [str(exc.details.get("location", "body")), *field.split(".")]
            return JSONResponse({"detail": [{"loc": loc, "msg": exc.message, "type": "invalid_params"}]}, status)
        body: dict[str, object] = {"detail": exc.message}
        if isinstance(exc, SpecError) and exc.details.get("problems"):
            body["problems"] = exc.details["problems"]
        # RFC 6750: a 401 names the scheme the client should use.
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(body, status, headers=headers)
