"""The subscriptions page: what the signed-in user has asked to hear of (a site admin: everyone's),
with how each is narrowed (a pipeline step, one output's changes, parameter values). Subscribing
and removing are done with the API or ``modelrunner subscriptions``; the page shows the API's
bodies (``SubscriptionOut``), so never a webhook secret."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from modelrunner.api.notify_schemas import SubscriptionOut
from modelrunner.notify import subscriptions
from modelrunner.web.rendering import PageRoute, render
from modelrunner.web.session import PageAccess, platform_of

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get("/subscriptions")
def subscriptions_page(request: Request, access: PageAccess) -> Response:
    with platform_of(request).database.read() as session:
        views = subscriptions.subscriptions(session, access)
    return render(
        request,
        "subscriptions.html",
        title="Subscriptions",
        subscriptions=[SubscriptionOut.of(view) for view in views],
        everyone=access.principal.is_admin,
    )
