"""Request body limits: every route reads at most ``max_body_bytes`` of a body, and the few that
take large bodies (a worker's file uploads, a runner's log chunks) a larger limit of their own.

A body is counted as it arrives, so an oversized one is refused (413, naming the limit) after at
most the limit has been read, whatever its Content-Length says; a declared Content-Length over the
limit is refused before anything is read. The limit is chosen when the route first reads the body,
after routing, from the route's endpoint: no list of paths to keep in step with the routes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass(frozen=True)
class BodyLimit:
    setting: str  # the Settings field (and MODELRUNNER_<SETTING> variable) that sets it
    max_bytes: int

    @property
    def variable(self) -> str:
        return f"MODELRUNNER_{self.setting.upper()}"


class BodyTooLarge(HTTPException):
    """A request body over its route's limit. An HTTPException, so that FastAPI, reading a JSON
    body, passes it on rather than calling the body unreadable (400)."""

    def __init__(self, limit: BodyLimit, size: int | None) -> None:
        said = f"{size} bytes" if size is not None else "more bytes than that"
        super().__init__(
            413,
            f"the request body is larger than this server takes here: at most {limit.max_bytes} bytes "
            f"({limit.setting}, {limit.variable}); it has {said}",
        )
        self.limit = limit


class BodyLimits:
    """ASGI middleware: the body a route reads never exceeds its limit."""

    def __init__(
        self, app: ASGIApp, default: BodyLimit, larger: Mapping[Callable[..., Any], BodyLimit] | None = None
    ) -> None:
        self.app = app
        self.default = default
        self.larger = dict(larger or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            limit = self._limit_of(scope)
            declared = _content_length(scope)
            if declared is not None and declared > limit.max_bytes:
                raise BodyTooLarge(limit, declared)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit.max_bytes:
                    raise BodyTooLarge(limit, declared)
            return message

        await self.app(scope, counted, send)

    def _limit_of(self, scope: Scope) -> BodyLimit:
        endpoint = getattr(scope.get("route"), "endpoint", None)  # set by routing, before a route reads its body
        return self.larger.get(endpoint, self.default) if endpoint is not None else self.default


def _content_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    return int(value) if value is not None and value.isdigit() else None
