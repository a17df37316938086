"""Response bodies of /api/v1/me, /users, /groups and /tokens: never a secret, a digest or a
password hash."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from modelrunner.auth.accounts import GroupOverview, TokenOverview, TokenState, UserOverview
from modelrunner.auth.principal import Principal


class MeOut(BaseModel):
    name: str = Field(description="The signed-in user's name")
    groups: list[str] = Field(description="Their groups, by name; `access: groups:` grants apply to them")
    is_admin: bool = Field(description="A site admin: manages accounts and may do anything on every model")

    @classmethod
    def of(cls, principal: Principal) -> MeOut:
        return cls(name=principal.name, groups=sorted(principal.groups), is_admin=principal.is_admin)


class SignedOutOut(BaseModel):
    user: str = Field(description="Whose web UI sessions ended")
    sessions_ended: int = Field(description="How many sessions ended (0: none was open)")


class UserOut(BaseModel):
    name: str
    email: str | None
    is_admin: bool = Field(description="A site admin")
    disabled: bool = Field(description="A disabled user's tokens and password do not work")
    has_password: bool = Field(description="Whether they can sign in to the web UI with a password")
    groups: list[str]
    active_tokens: int = Field(description="How many of their tokens are neither revoked nor expired")
    created_at: dt.datetime

    @classmethod
    def of(cls, user: UserOverview) -> UserOut:
        return cls(
            name=user.name,
            email=user.email,
            is_admin=user.is_admin,
            disabled=user.disabled,
            has_password=user.has_password,
            groups=list(user.groups),
            active_tokens=user.active_tokens,
            created_at=user.created_at,
        )


class GroupOut(BaseModel):
    name: str
    members: list[str] = Field(description="The members' user names")
    created_at: dt.datetime

    @classmethod
    def of(cls, group: GroupOverview) -> GroupOut:
        return cls(name=group.name, members=list(group.members), created_at=group.created_at)


class TokenOut(BaseModel):
    id: int = Field(description="The number in the token (`mrt_<id>_...`); `modelrunner tokens revoke ID`")
    user: str = Field(description="Whose token it is")
    label: str = Field(description="What it is for")
    state: TokenState = Field(description="active, expired or revoked")
    created_at: dt.datetime
    expires_at: dt.datetime | None = Field(description="When it stops working; null: never")
    revoked_at: dt.datetime | None

    @classmethod
    def of(cls, token: TokenOverview) -> TokenOut:
        return cls(
            id=token.id,
            user=token.user,
            label=token.label,
            state=token.state,
            created_at=token.created_at,
            expires_at=token.expires_at,
            revoked_at=token.revoked_at,
        )
