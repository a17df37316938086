"""Templates, and the route class that turns domain errors of a page into HTML pages.

The API keeps its JSON errors (api/errors.py); a page route answers a 401 with a redirect to the
sign-in page and any other domain error with an error page carrying the same message.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Request, Response
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from modelrunner import units
from modelrunner.api.errors import status_of
from modelrunner.errors import ModelrunnerError, Unauthenticated
from modelrunner.web.session import csrf_token, page_principal

HERE = Path(__file__).parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")
# Durations and sizes as the command line shows them: `{{ run_seconds | duration }}`, `{{ n_bytes | size }}`.
templates.env.filters["duration"] = units.duration
templates.env.filters["size"] = units.size

# Pages load nothing from elsewhere and run no inline script; frames of them are refused.
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
_TITLES = {403: "Not allowed", 404: "Not found", 409: "Conflict", 422: "Cannot do that", 503: "Unavailable"}


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    """``template`` with the signed-in user, the CSRF token and a one-time message in its context."""
    context.setdefault("principal", page_principal(request))
    context.setdefault("message", request.session.pop("flash", ""))
    context["csrf"] = csrf_token(request)
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def flash(request: Request, message: str) -> None:
    """A message for the next page this session renders (after a redirect)."""
    request.session["flash"] = message


def error_page(request: Request, exc: ModelrunnerError) -> Response:
    if isinstance(exc, Unauthenticated):
        if request.headers.get("HX-Request"):
            # A part of a page (htmx) fetched after the session ended: the whole page goes to
            # sign-in and back, rather than a sign-in form swapped into the part.
            page = urlsplit(request.headers.get("HX-Current-URL", "/"))
            back = page.path + (f"?{page.query}" if page.query else "")
            return Response(status_code=401, headers={"HX-Redirect": f"/signin?next={quote(back, safe='')}"})
        target = "/signin"
        if request.method == "GET":
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            target += f"?next={quote(path, safe='')}"
        return RedirectResponse(target, status_code=303)
    status = status_of(exc)
    return render(request, "error.html", status, title=_TITLES.get(status, "Error"), error=exc.message)


class PageRoute(APIRoute):
    """A page: domain errors become HTML, and every answer carries the pages' security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except ModelrunnerError as exc:
                response = error_page(request, exc)
            for name, value in _HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return page_handler
