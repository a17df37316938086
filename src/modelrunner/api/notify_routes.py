"""/api/v1/subscriptions and /api/v1/deliveries: who hears of which runs, and what was sent.

Signed-in users see and manage their own; site admins everyone's. Anything else is answered as
unknown (404)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from modelrunner.api.deps import AccessDep, PlatformDep
from modelrunner.api.notify_schemas import DeliveryDetail, DeliveryOut, SubscriptionCreated, SubscriptionOut
from modelrunner.api.notify_schemas import SubscriptionRequest as SubscriptionBody
from modelrunner.notify import subscriptions
from modelrunner.notify.states import DeliveryStatus
from modelrunner.store.row_ids import RowId

router = APIRouter(tags=["notifications"])

_SIGN_IN: dict[int | str, dict[str, Any]] = {401: {"description": "Not signed in"}}


@router.get("/subscriptions", response_model=list[SubscriptionOut], summary="List subscriptions", responses=_SIGN_IN)
def list_subscriptions(platform: PlatformDep, access: AccessDep) -> list[SubscriptionOut]:
    """Your subscriptions (a site admin: everyone's), oldest first. Webhook secrets are never shown."""
    with platform.database.read() as session:
        return [SubscriptionOut.of(view) for view in subscriptions.subscriptions(session, access)]


@router.post(
    "/subscriptions",
    response_model=SubscriptionCreated,
    status_code=201,
    summary="Subscribe to a model's runs (or a step's, an output's changes, runs with given parameters) or one run",
    responses={
        **_SIGN_IN,
        403: {"description": "You may not view the model"},
        404: {"description": "Unknown model or run"},
        409: {"description": "The run has ended, or you have this subscription already"},
        422: {
            "description": "No e-mail address (or no e-mail on this server) for email/digest; a bad url or "
            "secret; an unknown step or parameter, a bad output path"
        },
    },
)
def create_subscription(body: SubscriptionBody, platform: PlatformDep, access: AccessDep) -> SubscriptionCreated:
    """Needs `view` on the model. A webhook without `secret` gets a random one, returned in this
    answer only: keep it to verify the `X-Modelrunner-Signature` of its requests. `step`,
    `output` and `params` narrow a model subscription to one step's runs, to one output's
    changes, to runs with those parameter values."""
    request = subscriptions.SubscriptionRequest(
        model=body.model,
        run_id=body.run_id,
        notify_on=body.on,
        channel=body.channel,
        url=body.url,
        secret=body.secret,
        step=body.step,
        output=body.output,
        params=body.params,
    )
    with platform.database.write() as session:
        created = subscriptions.subscribe(session, access, platform.workspace, platform.secret_keys, request)
    return SubscriptionCreated.of_new(created)


@router.delete(
    "/subscriptions/{subscription_id}",
    response_model=SubscriptionOut,
    summary="Remove a subscription",
    responses={**_SIGN_IN, 404: {"description": "No such subscription of yours"}},
)
def remove_subscription(subscription_id: RowId, platform: PlatformDep, access: AccessDep) -> SubscriptionOut:
    """Its deliveries not sent yet are cancelled; what was sent stays listed."""
    with platform.database.write() as session:
        return SubscriptionOut.of(subscriptions.remove(session, access, subscription_id))


@router.get(
    "/deliveries",
    response_model=list[DeliveryOut],
    summary="List deliveries, newest first",
    responses={**_SIGN_IN, 404: {"description": "No such subscription of yours"}},
)
def list_deliveries(
    platform: PlatformDep,
    access: AccessDep,
    subscription: Annotated[RowId | None, Query(description="Only this subscription's")] = None,
    status: Annotated[list[DeliveryStatus] | None, Query(description="Repeat to match any of several")] = None,
    before: Annotated[RowId | None, Query(description="Only deliveries with a lower id (the next page)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[DeliveryOut]:
    """Your deliveries (a site admin: everyone's): every notification sent, being sent, failed, or
    held for a digest."""
    with platform.database.read() as session:
        found = subscriptions.deliveries(
            session, access, subscription_id=subscription, statuses=status or [], before_id=before, limit=limit
        )
    return [DeliveryOut.of(view) for view in found]


@router.get(
    "/deliveries/{delivery_id}",
    response_model=DeliveryDetail,
    summary="A delivery with what it sends and every attempt",
    responses={**_SIGN_IN, 404: {"description": "No such delivery of yours"}},
)
def get_delivery(delivery_id: RowId, platform: PlatformDep, access: AccessDep) -> DeliveryDetail:
    with platform.database.read() as session:
        return DeliveryDetail.of_detail(subscriptions.delivery(session, access, delivery_id))
