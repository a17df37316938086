"""Routing: which backend a run uses, and which rule chose it.

In order: the backend the request names (when the submitter may choose it), the first routing
rule of ``modelrunner.yaml`` for one of the submitter's groups and this model, the model's
``backend:``, the workspace's ``default_backend`` (or its first declared backend). A pure
function of the specs and the submitter: the same request is always routed the same way.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from fnmatch import fnmatchcase

from modelrunner.auth.access import SIGN_IN, Access
from modelrunner.auth.principal import Principal
from modelrunner.errors import Forbidden, InvalidInput, SpecError, Unauthenticated
from modelrunner.spec.access_spec import Level
from modelrunner.spec.backend_spec import RoutingRule
from modelrunner.spec.model_spec import MODEL_FILE, ModelSpec
from modelrunner.spec.workspace import WORKSPACE_FILE, WorkspaceSpec

REQUEST = "request"
MODEL = "model"
WORKSPACE = "workspace"
GROUP_PREFIX = "routing:"


@dataclass(frozen=True)
class Route:
    """Where a run goes: the backend's name, and the rule that chose it (``request``,
    ``routing:<group>``, ``model`` or ``workspace``)."""

    backend: str
    rule: str


def choose_backend(
    workspace: WorkspaceSpec, model: ModelSpec, submitter: Principal | None, requested: str | None = None
) -> Route:
    """The backend of a new run of ``model`` submitted by ``submitter``.

    ``submitter`` None is the platform itself (a schedule, a trigger): no group routes its runs,
    and a backend it names needs no permission. A person may name a backend when they have
    ``admin`` on the model, or when a routing rule of one of their groups sends this model there.

    Raises InvalidInput (field ``backend``) for a requested backend that is not declared,
    Forbidden when the submitter may not choose it, and SpecError when the rule that applies
    names a backend that is not declared (``modelrunner check`` reports those too).
    """
    declared = workspace.declared_backends()
    if requested is not None:
        if requested not in declared:
            raise InvalidInput(
                f"unknown backend '{requested}' (backends: {', '.join(sorted(declared))})", field="backend"
            )
        if submitter is not None:
            _require_choice(workspace, model, submitter, requested)
        return Route(requested, REQUEST)
    if submitter is not None:
        for index, rule in enumerate(workspace.routing):
            if _applies(rule, model.name, submitter):
                where = f"{WORKSPACE_FILE}: routing.{index}.backend"
                return _declared(Route(rule.backend, GROUP_PREFIX + rule.group), declared, where)
    if model.backend is not None:
        return _declared(Route(model.backend, MODEL), declared, f"{MODEL_FILE} of model '{model.name}': backend")
    where = f"{WORKSPACE_FILE}: default_backend"
    return _declared(Route(workspace.workspace_backend(), WORKSPACE), declared, where)


def choosable_backends(workspace: WorkspaceSpec, model: ModelSpec, submitter: Principal) -> list[str]:
    """The backends ``submitter`` may name for runs of ``model``: every declared one for an admin
    of the model, else those the routing rules of their groups send the model to."""
    if Access(submitter, workspace.access).may(model.name, Level.ADMIN):
        return sorted(workspace.declared_backends())
    return sorted({rule.backend for rule in workspace.routing if _applies(rule, model.name, submitter)})


def _require_choice(workspace: WorkspaceSpec, model: ModelSpec, submitter: Principal, requested: str) -> None:
    allowed = choosable_backends(workspace, model, submitter)
    if requested in allowed:
        return
    if not submitter.signed_in:
        raise Unauthenticated(f"choosing backend '{requested}' needs a signed-in user: {SIGN_IN}", backend=requested)
    raise Forbidden(
        f"choosing backend '{requested}' for model '{model.name}' needs 'admin' on the model, or a routing "
        f"rule in {WORKSPACE_FILE} that sends it there for one of {submitter.name}'s groups; "
        + (f"{submitter.name} may choose: {', '.join(allowed)}" if allowed else f"{submitter.name} may choose none"),
        model=model.name,
        backend=requested,
    )


def _applies(rule: RoutingRule, model: str, submitter: Principal) -> bool:
    return rule.group in submitter.groups and any(fnmatchcase(model, pattern) for pattern in rule.models)


def _declared(route: Route, declared: Collection[str], where: str) -> Route:
    """``route`` when its backend is declared; a run sent elsewhere would wait for ever."""
    if route.backend in declared:
        return route
    problem = f"{where}: unknown backend '{route.backend}' (backends: {', '.join(sorted(declared))})"
    raise SpecError(f"cannot route the run: {problem}; run `modelrunner check`", problems=[problem])
