"""The site admin's pages (users, groups, schedules, notification deliveries) and the schedules
page every caller gets for the models they may view.

Accounts are changed with ``modelrunner users|groups`` on the server's machine; the users page
only signs a user out of the web UI everywhere (a POST with the session's CSRF token). Each
page shows the API's response bodies (``UserOut``, ``ScheduleOut``, ``DeliveryOut``...), so it
never shows what the API would not: no password hash, token digest or webhook secret.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from modelrunner.api.accounts_schemas import GroupOut, UserOut
from modelrunner.api.automation_schemas import ScheduleOut
from modelrunner.api.notify_schemas import DeliveryOut
from modelrunner.auth import accounts
from modelrunner.auth.access import Access
from modelrunner.notify import subscriptions
from modelrunner.spec.access_spec import Level
from modelrunner.store.row_ids import RowId
from modelrunner.web.rendering import PageRoute, flash, render
from modelrunner.web.session import PageAccess, checked_form, platform_of

router = APIRouter(route_class=PageRoute, include_in_schema=False)

DELIVERIES_PER_PAGE = 50


@router.get("/admin")
def admin_page(request: Request, access: PageAccess) -> Response:
    access.require_site_admin("the admin pages")
    return render(request, "admin.html", title="Admin")


@router.get("/admin/users")
def users_page(request: Request, access: PageAccess) -> Response:
    access.require_site_admin("listing users")
    with platform_of(request).database.read() as session:
        users = [UserOut.of(user) for user in accounts.list_users(session)]
    return render(request, "admin_users.html", title="Users", users=users)


@router.post("/admin/users/{name}/sign-out")
async def sign_out_user(request: Request, name: str, access: PageAccess) -> Response:
    """End every web UI session of the user (the API's POST /users/{name}/sign-out)."""
    access.require_site_admin(f"signing user '{name}' out")
    await checked_form(request)
    with platform_of(request).database.write() as session:
        ended = accounts.sign_out_everywhere(session, name)
    flash(request, f"Signed {name} out of {ended} web session{'' if ended == 1 else 's'}.")
    return RedirectResponse("/admin/users", status_code=303)


@router.get("/admin/groups")
def groups_page(request: Request, access: PageAccess) -> Response:
    access.require_site_admin("listing groups")
    with platform_of(request).database.read() as session:
        groups = [GroupOut.of(group) for group in accounts.list_groups(session)]
    return render(request, "admin_groups.html", title="Groups", groups=groups)


@router.get("/admin/schedules")
def all_schedules_page(request: Request, access: PageAccess) -> Response:
    access.require_site_admin("listing every schedule")
    return _schedules_page(request, access, "All schedules")


@router.get("/schedules")
def schedules_page(request: Request, access: PageAccess) -> Response:
    """The schedules of the models the caller may view: the API's ``/schedules`` list."""
    access.require_listing("listing schedules")
    return _schedules_page(request, access, "Schedules")


def _schedules_page(request: Request, access: Access, title: str) -> Response:
    overviews = platform_of(request).scheduler.overview()
    schedules = [ScheduleOut.of(o) for o in overviews if access.may(o.model, Level.VIEW)]
    return render(request, "schedules.html", title=title, schedules=schedules)


@router.get("/admin/deliveries")
def deliveries_page(request: Request, access: PageAccess, before: RowId | None = None) -> Response:
    """Everyone's notification deliveries, newest first; ``before`` (a delivery id) pages back."""
    access.require_site_admin("listing every delivery")
    with platform_of(request).database.read() as session:
        views = subscriptions.deliveries(
            session, access, subscription_id=None, statuses=[], before_id=before, limit=DELIVERIES_PER_PAGE + 1
        )
    deliveries = [DeliveryOut.of(view) for view in views[:DELIVERIES_PER_PAGE]]
    # One more than a page was asked for: whether there is an older page, without counting.
    older = deliveries[-1].id if len(views) > DELIVERIES_PER_PAGE else None
    return render(
        request, "admin_deliveries.html", title="Deliveries", deliveries=deliveries, before=before, older=older
    )
