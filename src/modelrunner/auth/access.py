"""What a caller may do: the grants of ``access:`` in modelrunner.yaml applied to a Principal.

The API routes (and the web pages) ask one ``Access`` per request; nothing else decides.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

from modelrunner.auth.principal import Principal
from modelrunner.errors import Forbidden, Unauthenticated
from modelrunner.spec.access_spec import AccessSpec, Grant, Level

WORKERS_GROUP = "workers"  # its members may serve worker pools
SIGN_IN = "send `Authorization: Bearer <token>` (the CLI reads MODELRUNNER_TOKEN)"


class Access:
    """One caller under one access spec. A site admin may do everything."""

    def __init__(self, principal: Principal, spec: AccessSpec) -> None:
        self.principal = principal
        grants = list(spec.anonymous)
        if principal.signed_in:
            grants += spec.signed_in
            for group in sorted(principal.groups):
                grants += spec.groups.get(group, [])
        self._grants: list[Grant] = grants

    def level(self, model: str) -> Level | None:
        """The highest level any of the caller's grants gives on ``model``."""
        if self.principal.is_admin:
            return Level.ADMIN
        levels = [g.allow for g in self._grants if any(fnmatchcase(model, pattern) for pattern in g.models)]
        return max(levels, default=None)

    def may(self, model: str, level: Level) -> bool:
        have = self.level(model)
        return have is not None and have >= level

    def require(self, model: str, level: Level, doing: str) -> None:
        """Unauthenticated (no token) or Forbidden naming the level ``doing`` needs on ``model``."""
        if self.may(model, level):
            return
        needed = f"{doing} needs '{level.label}' on model '{model}'"
        if not self.principal.signed_in:
            raise Unauthenticated(f"{needed}: sign in ({SIGN_IN})", model=model, needs=level.label)
        have = self.level(model)
        has = f"'{have.label}'" if have is not None else "no access to it"
        raise Forbidden(f"{needed}; {self.principal.name} has {has}", model=model, needs=level.label)

    def visible(self, models: Iterable[str]) -> list[str]:
        """The models among ``models`` the caller may view, in their order."""
        return [model for model in models if self.may(model, Level.VIEW)]

    def sees_every_model(self) -> bool:
        """Whether a grant of ``*`` (or being a site admin) shows every model, present and past."""
        return self.principal.is_admin or any("*" in g.models for g in self._grants)

    def require_listing(self, doing: str) -> None:
        """Anonymous callers of a workspace that grants them nothing get 401 instead of an empty list."""
        if not self.principal.signed_in and not self._grants:
            raise Unauthenticated(f"{doing} needs a signed-in user: {SIGN_IN}")

    def require_signed_in(self, doing: str) -> None:
        if not self.principal.signed_in:
            raise Unauthenticated(f"{doing} needs a signed-in user: {SIGN_IN}")

    def require_site_admin(self, doing: str) -> None:
        self.require_signed_in(doing)
        if not self.principal.is_admin:
            raise Forbidden(f"{doing} needs a site admin; {self.principal.name} is not one")

    def require_pool_worker(self, pool: str) -> None:
        """Serving a worker pool (claiming its attempts) needs a site admin or a member of the
        group ``workers``: a worker runs any model routed to its pool."""
        doing = f"serving the worker pool '{pool}'"
        self.require_signed_in(doing)
        if not (self.principal.is_admin or WORKERS_GROUP in self.principal.groups):
            who = self.principal.name
            raise Forbidden(f"{doing} needs a site admin or a member of the group '{WORKERS_GROUP}'; {who} is neither")

    def require_dataset(self, dataset: str, readers: list[str], level: Level, doing: str) -> None:
        """A dataset is reached through the models that read it: viewing or syncing it needs that
        level on one of them, deleting its versions needs it on all of them (a site admin when
        no model reads it)."""
        if self.principal.is_admin:
            return
        if level >= Level.ADMIN:
            if not readers:
                self.require_site_admin(doing)
            for model in readers:
                self.require(model, level, doing)
            return
        if any(self.may(model, level) for model in readers):
            return
        needed = f"{doing} needs '{level.label}' on a model that reads dataset '{dataset}'"
        if not self.principal.signed_in:
            raise Unauthenticated(f"{needed}: sign in ({SIGN_IN})", dataset=dataset, needs=level.label)
        raise Forbidden(f"{needed} ({', '.join(readers) or 'no model reads it'})", dataset=dataset, needs=level.label)
