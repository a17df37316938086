"""Subscriptions and their deliveries as a caller sees them: who may subscribe to what, and who
sees which subscriptions and deliveries.

Rules callers can rely on:

- only signed-in users subscribe; a subscription belongs to its creator. Subscribing to a model,
  or to one of its runs, needs ``view`` on the model;
- a model subscription may be narrowed (422 naming what is wrong otherwise): ``step`` to one
  step of a pipeline (one the model declares), ``output`` to the changes of one output (a
  relative path; such a subscription asks for ``results_changed``, its default), ``params`` to
  runs with these parameter values (names the model's parameter schema declares, at most
  ``MAX_PARAMS`` of them);
- ``email`` and ``digest`` go to the user's e-mail address (422 at subscribe time without one,
  or when the server has no ``notifications.email``; digests also need ``notifications.digest``);
  ``webhook`` needs an http(s) URL, and signs with the secret given or, without one, with a new
  random secret returned once, in the creation's answer, and never again;
- a run that has already ended cannot be subscribed to (409): nothing more will happen to it;
- users see and remove their own subscriptions and deliveries; site admins everyone's. Anything
  else is answered as unknown (404), so subscriptions of others cannot be probed;
- a webhook's secret is stored encrypted (notify/webhook_secrets.py);
- removing a subscription wipes its secret and cancels its deliveries not sent yet (pending or
  held for a digest); history stays.

Every function takes the caller's session, so a route decides the transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from modelrunner.auth.access import Access
from modelrunner.auth.secret_keys import SecretKeys
from modelrunner.clock import utcnow
from modelrunner.engine.states import FINAL_RUN_STATES
from modelrunner.errors import Conflict, InvalidInput, NotFound
from modelrunner.notify import webhooks
from modelrunner.notify.delivery_transition import cancel_unsent
from modelrunner.notify.states import Channel, DeliveryStatus, NotifyOn
from modelrunner.spec.access_spec import Level
from modelrunner.spec.notify_spec import output_path
from modelrunner.spec.workspace import Workspace
from modelrunner.store import account_queries, notify_queries, queries
from modelrunner.store.tables import DeliveryAttemptRow, DeliveryRow, SubscriptionRow, UserRow

MIN_SECRET_LENGTH = 16
MAX_PARAMS = 20  # parameter values one subscription may name
MAX_PARAMS_CHARS = 4096  # their JSON
MAX_OUTPUT_CHARS = 1024
_FINAL = {status.value for status in FINAL_RUN_STATES}


@dataclass(frozen=True)
class SubscriptionRequest:
    """What a caller asks for: ``model`` or ``run_id`` (one of them), when, and how; a model
    subscription narrowed to a ``step``, an ``output``'s changes, runs with ``params``.
    ``notify_on`` None: ``results_changed`` with an output, else ``all``."""

    model: str | None
    run_id: int | None
    notify_on: NotifyOn | None
    channel: Channel
    url: str | None = None
    secret: str | None = None
    step: str | None = None
    output: str | None = None
    params: dict[str, Any] | None = None


@dataclass(frozen=True)
class SubscriptionView:
    """A subscription with its owner (its e-mail address is where e-mail and digests go)."""

    row: SubscriptionRow
    user: UserRow

    @property
    def target(self) -> str | None:
        return self.row.url if self.row.channel == Channel.WEBHOOK else self.user.email


@dataclass(frozen=True)
class NewSubscription:
    """A subscription just created; ``secret`` is the generated webhook secret, shown this once
    (None when the caller brought their own, or for e-mail and digests)."""

    view: SubscriptionView
    secret: str | None


@dataclass(frozen=True)
class DeliveryView:
    row: DeliveryRow
    user: str
    attempts: list[DeliveryAttemptRow]


def subscribe(
    session: Session, access: Access, workspace: Workspace, keys: SecretKeys, request: SubscriptionRequest
) -> NewSubscription:
    """Create the caller's subscription (a webhook's secret encrypted with ``keys``); see the
    module's rules for the errors."""
    access.require_signed_in("subscribing to notifications")
    if request.run_id is not None and _narrowed(request):
        raise InvalidInput(
            "step, output and params narrow a model subscription; a run subscription hears of that run only",
            field="run_id",
        )
    model = _target_model(session, access, workspace, request)
    user = account_queries.user_by_id(session, access.principal.user_id or 0)
    if user is None:
        raise NotFound(f"unknown user '{access.principal.name}'")
    notify_on = _narrowing(workspace, model, request)
    _check_channel(workspace, user, request)
    url = request.url if request.channel == Channel.WEBHOOK else None
    row = SubscriptionRow(
        user_id=user.id,
        model=model,
        run_id=request.run_id,
        notify_on=notify_on.value,
        step=request.step,
        output=request.output.strip() if request.output is not None else None,
        params=request.params or None,
        channel=request.channel.value,
        url=url,
        secret=None,
        created_at=utcnow(),
        removed_at=None,
    )
    same = notify_queries.same_subscription(session, row)
    if same is not None:
        raise Conflict(f"you have this subscription already (id {same.id})", subscription=same.id)
    generated = webhooks.new_secret() if request.channel == Channel.WEBHOOK and request.secret is None else None
    secret = (request.secret or generated) if request.channel == Channel.WEBHOOK else None
    row.secret = keys.encrypt(secret) if secret is not None else None
    notify_queries.add_subscription(session, row)
    return NewSubscription(SubscriptionView(row, user), generated)


def subscriptions(session: Session, access: Access) -> list[SubscriptionView]:
    """The caller's active subscriptions (a site admin: everyone's), oldest first."""
    access.require_signed_in("listing subscriptions")
    rows = notify_queries.subscriptions(session, None if access.principal.is_admin else access.principal.user_id)
    users = account_queries.users_by_id(session, {row.user_id for row in rows})
    return [SubscriptionView(row, users[row.user_id]) for row in rows]


def remove(session: Session, access: Access, subscription_id: int) -> SubscriptionView:
    """Remove a subscription of the caller's (a site admin: anyone's); NotFound otherwise."""
    access.require_signed_in("removing a subscription")
    row = _visible_subscription(session, access, subscription_id)
    now = utcnow()
    notify_queries.remove_subscription_if_active(session, row.id, now)
    cancel_unsent(session, row.id, now)
    session.refresh(row)
    user = account_queries.user_by_id(session, row.user_id)
    assert user is not None  # users are never deleted
    return SubscriptionView(row, user)


def deliveries(
    session: Session,
    access: Access,
    *,
    subscription_id: int | None,
    statuses: list[DeliveryStatus],
    before_id: int | None,
    limit: int,
) -> list[DeliveryView]:
    """The caller's deliveries (a site admin: everyone's), newest first, without their attempts."""
    access.require_signed_in("listing deliveries")
    if subscription_id is not None:
        _visible_subscription(session, access, subscription_id, removed_too=True)
    rows = notify_queries.deliveries(
        session,
        user_id=None if access.principal.is_admin else access.principal.user_id,
        subscription_id=subscription_id,
        statuses=[status.value for status in statuses],
        before_id=before_id,
        limit=limit,
    )
    users = account_queries.users_by_id(session, {row.user_id for row in rows})
    return [DeliveryView(row, users[row.user_id].name, []) for row in rows]


def delivery(session: Session, access: Access, delivery_id: int) -> DeliveryView:
    """One delivery of the caller's (a site admin: anyone's) with every attempt; NotFound otherwise."""
    access.require_signed_in("reading a delivery")
    row = notify_queries.delivery(session, delivery_id)
    if row is None or not _sees(access, row.user_id):
        raise NotFound(f"unknown delivery {delivery_id}", delivery=delivery_id)
    user = account_queries.user_by_id(session, row.user_id)
    return DeliveryView(row, user.name if user else str(row.user_id), notify_queries.attempts_of(session, row.id))


# --- checks -------------------------------------------------------------------------------------


def _target_model(session: Session, access: Access, workspace: Workspace, request: SubscriptionRequest) -> str:
    """The model subscribed to (a run's model), once the caller may view it."""
    if (request.model is None) == (request.run_id is None):
        raise InvalidInput("give either model (all its runs) or run_id (one run)", field="model")
    if request.run_id is not None:
        run = queries.get_run(session, request.run_id)
        if run is None:
            raise NotFound(f"unknown run {request.run_id}", run=request.run_id)
        access.require(run.model_name, Level.VIEW, f"subscribing to run {run.id}")
        if run.status in _FINAL:
            raise Conflict(
                f"run {run.id} has ended ({run.status}); nothing more will happen to it. "
                f"Subscribe to model '{run.model_name}' to hear of its next runs",
                run=run.id,
            )
        return run.model_name
    model = str(request.model)
    access.require(model, Level.VIEW, f"subscribing to model '{model}'")
    workspace.model(model)  # NotFound for a model the workspace does not have
    return model


def _narrowed(request: SubscriptionRequest) -> bool:
    return request.step is not None or request.output is not None or bool(request.params)


def _narrowing(workspace: Workspace, model: str, request: SubscriptionRequest) -> NotifyOn:
    """Check the step, output and parameter values a subscription is narrowed to; what it is
    notified on."""
    narrowed = _narrowed(request)
    if request.output is not None:
        if request.notify_on not in (None, NotifyOn.RESULTS_CHANGED):
            raise InvalidInput(
                f"output: a subscription to one output hears when its bytes change (on results_changed), "
                f"not on {request.notify_on.value}",
                field="on",
            )
        if len(request.output) > MAX_OUTPUT_CHARS:
            raise InvalidInput(f"output: at most {MAX_OUTPUT_CHARS} characters", field="output")
        try:
            output_path(request.output, "output")
        except ValueError as exc:
            raise InvalidInput(str(exc), field="output") from None
    if not narrowed:
        return request.notify_on or NotifyOn.ALL
    spec = workspace.model(model).spec
    if request.step is not None and request.step not in spec.steps:
        known = ", ".join(spec.steps)
        raise InvalidInput(
            f"model '{model}' has no step '{request.step}'"
            + (f" (its steps: {known})" if known else ": it is not a pipeline"),
            field="step",
        )
    if request.params:
        _check_params(model, spec.params, request.params)
    if request.output is not None:
        return NotifyOn.RESULTS_CHANGED
    return request.notify_on or NotifyOn.ALL


def _check_params(model: str, schema: dict[str, Any], params: dict[str, Any]) -> None:
    if len(params) > MAX_PARAMS:
        raise InvalidInput(f"params: at most {MAX_PARAMS} parameter values", field="params")
    try:
        text = json.dumps(params, allow_nan=False)
    except ValueError:
        raise InvalidInput("params: a value is not a finite number", field="params") from None
    if len(text) > MAX_PARAMS_CHARS:
        raise InvalidInput(f"params: at most {MAX_PARAMS_CHARS} characters of JSON", field="params")
    declared = schema.get("properties")
    if isinstance(declared, dict):
        unknown = sorted(name for name in params if name not in declared)
        if unknown:
            raise InvalidInput(
                f"params: model '{model}' has no parameter {', '.join(repr(n) for n in unknown)} "
                f"(its parameters: {', '.join(declared) or 'none'})",
                field="params",
            )


def _check_channel(workspace: Workspace, user: UserRow, request: SubscriptionRequest) -> None:
    notifications = workspace.spec().notifications
    if request.channel != Channel.WEBHOOK and (request.url is not None or request.secret is not None):
        raise InvalidInput("url and secret are for webhook subscriptions only", field="url")
    if request.channel in (Channel.EMAIL, Channel.DIGEST):
        if not user.email:
            raise InvalidInput(
                f"user '{user.name}' has no e-mail address to send to; a site admin can give them one",
                field="channel",
            )
        if notifications.email is None:
            raise InvalidInput(
                "this server sends no e-mail: add notifications.email to modelrunner.yaml", field="channel"
            )
        if request.channel == Channel.DIGEST and notifications.digest is None:
            raise InvalidInput(
                "this server sends no digests: add notifications.digest (a cron) to modelrunner.yaml",
                field="channel",
            )
        return
    if request.url is None:
        raise InvalidInput("a webhook subscription needs url", field="url")
    parts = urlsplit(request.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("url must be an http:// or https:// URL with a host", field="url")
    if request.secret is not None and len(request.secret) < MIN_SECRET_LENGTH:
        # The value is never repeated: it is a secret, even a bad one.
        raise InvalidInput(
            f"secret is too short: give at least {MIN_SECRET_LENGTH} characters, or none to get a random one",
            field="secret",
        )


def _visible_subscription(
    session: Session, access: Access, subscription_id: int, *, removed_too: bool = False
) -> SubscriptionRow:
    row = notify_queries.subscription(session, subscription_id)
    if row is None or (row.removed_at is not None and not removed_too) or not _sees(access, row.user_id):
        raise NotFound(f"unknown subscription {subscription_id}", subscription=subscription_id)
    return row


def _sees(access: Access, user_id: int) -> bool:
    return access.principal.is_admin or access.principal.user_id == user_id
