"""/api/v1/me, /users, /groups and /tokens: who the caller is, and the accounts a site admin
manages. Accounts are changed with ``modelrunner users|groups|tokens`` on the server's machine;
the one change made here is a site admin signing a user out of the web UI everywhere. Nothing
here returns a token's secret, its digest or a password hash."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from modelrunner.api.accounts_schemas import GroupOut, MeOut, SignedOutOut, TokenOut, UserOut
from modelrunner.api.deps import AccessDep, PlatformDep
from modelrunner.auth import accounts

router = APIRouter(tags=["accounts"])

_SIGNED_IN: dict[int | str, dict[str, Any]] = {
    401: {"description": "No token, or an unknown, expired or revoked one, or a disabled user's"},
}
_SITE_ADMIN: dict[int | str, dict[str, Any]] = {
    **_SIGNED_IN,
    403: {"description": "The caller is not a site admin"},
}


@router.get("/me", response_model=MeOut, summary="Who the caller is: name, groups, site admin", responses=_SIGNED_IN)
def me(access: AccessDep) -> MeOut:
    """The user the bearer token belongs to; a handy check that a token works."""
    access.require_signed_in("asking who you are")
    return MeOut.of(access.principal)


@router.get("/users", response_model=list[UserOut], summary="List the users (site admins)", responses=_SITE_ADMIN)
def list_users(platform: PlatformDep, access: AccessDep) -> list[UserOut]:
    """Every user by name with their groups and how many of their tokens work."""
    access.require_site_admin("listing users")
    with platform.database.read() as session:
        return [UserOut.of(user) for user in accounts.list_users(session)]


@router.post(
    "/users/{name}/sign-out",
    response_model=SignedOutOut,
    summary="Sign a user out of the web UI everywhere (site admins)",
    responses={**_SITE_ADMIN, 404: {"description": "Unknown user"}},
)
def sign_out_user(name: str, platform: PlatformDep, access: AccessDep) -> SignedOutOut:
    """Every web UI session of the user ends at once, copies of its cookie included; their
    password and API tokens keep working. Idempotent: 0 sessions ended when none was open."""
    access.require_site_admin(f"signing user '{name}' out")
    with platform.database.write() as session:
        ended = accounts.sign_out_everywhere(session, name)
    return SignedOutOut(user=name, sessions_ended=ended)


@router.get("/groups", response_model=list[GroupOut], summary="List the groups (site admins)", responses=_SITE_ADMIN)
def list_groups(platform: PlatformDep, access: AccessDep) -> list[GroupOut]:
    """Every group by name with its members."""
    access.require_site_admin("listing groups")
    with platform.database.read() as session:
        return [GroupOut.of(group) for group in accounts.list_groups(session)]


@router.get(
    "/tokens",
    response_model=list[TokenOut],
    summary="List API tokens: the caller's own (a site admin: anyone's)",
    responses={
        **_SIGNED_IN,
        403: {"description": "`user` names someone else and the caller is not a site admin"},
        404: {"description": "Unknown user"},
    },
)
def list_tokens(
    platform: PlatformDep,
    access: AccessDep,
    user: Annotated[
        str | None,
        Query(description="Whose tokens; the caller's own by default (a site admin: everyone's by default)"),
    ] = None,
) -> list[TokenOut]:
    """Tokens oldest first, with their state (active, expired, revoked); never their secrets, which
    are not stored."""
    access.require_signed_in("listing tokens")
    principal = access.principal
    if principal.is_admin:
        whose = user
    else:
        if user is not None and user != principal.name:
            access.require_site_admin(f"listing the tokens of user '{user}'")
        whose = principal.name
    with platform.database.read() as session:
        return [TokenOut.of(token) for token in accounts.list_tokens(session, whose)]
