"""Request and response bodies of /api/v1/subscriptions and /api/v1/deliveries.

No response carries a webhook secret, except the one answer that creates a subscription with a
generated secret; URLs show no user info (``***``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from modelrunner.data.source import public_url
from modelrunner.notify.states import Channel, NotifyOn
from modelrunner.notify.subscriptions import DeliveryView, NewSubscription, SubscriptionView
from modelrunner.store.row_ids import RowId
from modelrunner.store.tables import DeliveryAttemptRow


class SubscriptionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"model": "seir", "channel": "email"}]})

    model: str | None = Field(default=None, description="Every top-level run of this model (or give `run_id`)")
    run_id: RowId | None = Field(default=None, description="This one run (it must not have ended yet)")
    on: NotifyOn | None = Field(
        default=None,
        description="all: every run that ends; failures: failed or timed out; results_changed: successes whose "
        "outputs differ from the previous result for the same parameters (only the outputs the model's "
        "notify.changes names). Default: results_changed with `output`, else all",
    )
    step: str | None = Field(
        default=None, max_length=63, description="Only the runs of this step of the pipeline (each fan-out item's)"
    )
    output: str | None = Field(
        default=None, max_length=1024, description="Only when this output's bytes change (e.g. results.csv)"
    )
    params: dict[str, Any] | None = Field(
        default=None, description='Only runs whose parameters hold these values, e.g. {"query": "covid"}'
    )
    channel: Channel = Field(description="email or digest (to your e-mail address), or webhook (`url`)")
    url: str | None = Field(default=None, description="The webhook's URL")
    secret: str | None = Field(
        default=None,
        description="The webhook's signing secret (at least 16 characters); leave it out to get a random one, "
        "shown once in the answer",
    )

    @field_validator("on", mode="before")
    @classmethod
    def _hyphens(cls, value: Any) -> Any:
        return value.replace("-", "_") if isinstance(value, str) else value


class SubscriptionOut(BaseModel):
    id: int
    user: str
    model: str
    run_id: int | None = Field(description="The run subscribed to; null: every top-level run of the model")
    on: NotifyOn
    step: str | None = Field(description="Only this pipeline step's runs")
    output: str | None = Field(description="Only when this output's bytes change")
    params: dict[str, Any] | None = Field(description="Only runs with these parameter values")
    channel: Channel
    target: str | None = Field(description="Where it goes: the user's e-mail address, or the webhook URL")
    created_at: dt.datetime

    @classmethod
    def of(cls, view: SubscriptionView) -> SubscriptionOut:
        row = view.row
        target = view.target
        return cls(
            id=row.id,
            user=view.user.name,
            model=row.model,
            run_id=row.run_id,
            on=NotifyOn(row.notify_on),
            step=row.step,
            output=row.output,
            params=row.params,
            channel=Channel(row.channel),
            target=public_url(target) if target and row.channel == Channel.WEBHOOK else target,
            created_at=row.created_at,
        )


class SubscriptionCreated(SubscriptionOut):
    secret: str | None = Field(
        description="The generated webhook signing secret: shown in this answer only, keep it now. "
        "null when you gave your own, and for e-mail and digests"
    )

    @classmethod
    def of_new(cls, created: NewSubscription) -> SubscriptionCreated:
        return cls(**SubscriptionOut.of(created.view).model_dump(), secret=created.secret)


class DeliveryAttemptOut(BaseModel):
    number: int
    started_at: dt.datetime
    duration_seconds: float = Field(description="Seconds the attempt took")
    ok: bool
    http_status: int | None = Field(description="The webhook receiver's answer")
    error: str | None = Field(description="What went wrong (SMTP or HTTP), with no secret in it")

    @classmethod
    def of(cls, row: DeliveryAttemptRow) -> DeliveryAttemptOut:
        return cls.model_validate(row, from_attributes=True)


class DeliveryOut(BaseModel):
    id: int
    key: str = Field(description="The idempotency key: the mail's Message-ID and the webhook's X-Modelrunner-Delivery")
    kind: str = Field(description="event (one run that ended) or digest (a summary mail)")
    subscription_id: int | None = Field(description="null for a digest mail (it serves every digest subscription)")
    user: str
    channel: str = Field(description="email, webhook, or digest (an item held for the next digest mail)")
    target: str = Field(description="The address or URL it goes to; empty for held items")
    event: str = Field(description="run.succeeded, run.failed, run.timed_out, run.cancelled or digest")
    event_id: int | None
    run_id: int | None
    status: str = Field(
        description="pending, sending, delivered, failed (no attempts left), cancelled (subscription removed), "
        "held (for the next digest) or digested (in the digest mail `digest_id`)"
    )
    attempt_count: int
    next_attempt_at: dt.datetime | None = Field(description="pending: the next try; sending: when the claim expires")
    last_error: str | None
    digest_id: int | None
    created_at: dt.datetime
    updated_at: dt.datetime
    delivered_at: dt.datetime | None

    @classmethod
    def fields_of(cls, view: DeliveryView) -> dict[str, Any]:
        row = view.row
        return {
            "id": row.id,
            "key": row.key,
            "kind": row.kind,
            "subscription_id": row.subscription_id,
            "user": view.user,
            "channel": row.channel,
            "target": public_url(row.target) if row.channel == Channel.WEBHOOK else row.target,
            "event": row.event_type,
            "event_id": row.event_id,
            "run_id": row.run_id,
            "status": row.status,
            "attempt_count": row.attempts,
            "next_attempt_at": row.next_attempt_at,
            "last_error": row.last_error,
            "digest_id": row.digest_id,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
            "delivered_at": row.delivered_at,
        }

    @classmethod
    def of(cls, view: DeliveryView) -> DeliveryOut:
        return cls(**cls.fields_of(view))


class DeliveryDetail(DeliveryOut):
    payload: dict[str, Any] = Field(
        description="What is sent: the webhook's JSON body, or what the mail is written from"
    )
    attempts: list[DeliveryAttemptOut] = Field(description="Every attempt, oldest first")

    @classmethod
    def of_detail(cls, view: DeliveryView) -> DeliveryDetail:
        return cls(
            **DeliveryOut.fields_of(view),
            payload=view.row.payload,
            attempts=[DeliveryAttemptOut.of(a) for a in view.attempts],
        )
