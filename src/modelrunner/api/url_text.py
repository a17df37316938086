"""Refuse a request whose path or query carries a NUL character.

No name, key or filter of the API may hold one, and PostgreSQL cannot even compare a text column
with one, so such a request is answered 400 here, naming where the NUL is, before any route (and
both stores) sees it."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send


class RefuseNulInUrl:
    """ASGI middleware: a NUL in the path or in a query parameter is a 400 with a JSON body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            where = _where_nul(scope)
            if where is not None:
                await JSONResponse({"detail": f"the {where} holds a NUL character, which no value here may hold"}, 400)(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)


def _where_nul(scope: Scope) -> str | None:
    if "\x00" in scope["path"] or "\x00" in unquote(scope.get("raw_path", b"").decode("latin-1")):
        return "path"
    query = scope.get("query_string", b"").decode("latin-1")
    if "%00" not in query and "\x00" not in query:
        return None
    for name, value in parse_qsl(query, keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return f"query parameter {name.replace(chr(0), '')!r}"
    return None
