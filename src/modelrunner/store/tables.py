"""SQLAlchemy table definitions; Alembic migrations must produce exactly this schema."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from modelrunner.data.sync_status import ACTIVE_SYNC_STATES
from modelrunner.engine.states import ACTIVE_RUN_STATES

# SQLite autoincrements only INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids.
Id = BigInteger().with_variant(Integer, "sqlite")

_ACTIVE = "status IN ({})".format(", ".join(f"'{s.value}'" for s in sorted(ACTIVE_RUN_STATES)))
_ACTIVE_SYNC = "status IN ({})".format(", ".join(f"'{s.value}'" for s in sorted(ACTIVE_SYNC_STATES)))


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timestamps stored in UTC and always returned timezone-aware (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use modelrunner.clock.utcnow()")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: JSON()}  # noqa: RUF012 (SQLAlchemy reads it)


class ModelVersionRow(Base):
    """One version of a model as first submitted: its spec and where its snapshot is stored."""

    __tablename__ = "model_versions"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    spec: Mapped[dict[str, Any]]
    snapshot_uri: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime]


class RunKind:
    RUN = "run"  # a model with a command
    PIPELINE = "pipeline"  # a model with steps: never executed itself, its children are
    STEP = "step"  # one step (or one fan-out item of a step) of a pipeline run


class RunRow(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(8), default=RunKind.RUN, server_default=RunKind.RUN)
    parent_id: Mapped[int | None] = mapped_column(Id, ForeignKey("runs.id"))
    step: Mapped[str | None] = mapped_column(String(63))
    item_key: Mapped[str | None] = mapped_column(String(128))  # the fan-out item's folder name
    item: Mapped[Any | None] = mapped_column(JSON)  # the fan-out item, given as MODELRUNNER_ITEM
    # A pipeline: {"refresh": [steps], "skip": [steps], "rerun_of": id}; a step run: what it needs.
    plan: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    origin: Mapped[str | None] = mapped_column(String(160))  # "schedule:<name>#<item>", "trigger:<name>", ...
    submitted_by: Mapped[int | None] = mapped_column(Id, ForeignKey("users.id"))  # None: a schedule, a trigger
    backend: Mapped[str] = mapped_column(String(63), default="local", server_default="local")
    # Which routing rule chose the backend: "request", "routing:<group>", "model", "workspace".
    backend_rule: Mapped[str] = mapped_column(String(80), default="workspace", server_default="workspace")
    model_name: Mapped[str] = mapped_column(String(63))
    model_version: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]]
    # {input name: {"dataset": name, "version": id}}: the data versions the run is computed on.
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default=text("'{}'"))
    cache_key: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    cache_hit: Mapped[bool] = mapped_column(Boolean, default=False)
    source_run_id: Mapped[int | None] = mapped_column(Id, ForeignKey("runs.id"))
    slots: Mapped[int] = mapped_column(Integer, default=1)
    progress_fraction: Mapped[float | None] = mapped_column(Float)
    progress_message: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime]
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]

    __table_args__ = (
        Index("ix_runs_model_status_id", "model_name", "status", "id"),
        Index("ix_runs_model_id", "model_name", "id"),
        Index("ix_runs_status_id", "status", "id"),
        Index("ix_runs_backend_status_id", "backend", "status", "id"),  # a backend's dispatcher claims its queue
        Index("ix_runs_parent_id_id", "parent_id", "id"),
        Index("ix_runs_origin_id", "origin", "id"),
        # The cache lookup: equality on the first three, newest first on the last, so hits recorded
        # for a key (cache_hit true) are never scanned on the way to the run that computed it.
        Index("ix_runs_cache_lookup", "cache_key", "cache_hit", "status", "finished_at"),
        # Single-flight: at most one unfinished run per cache key, enforced by the database.
        Index(
            "ux_runs_active_cache_key",
            "cache_key",
            unique=True,
            sqlite_where=text(_ACTIVE),
            postgresql_where=text(_ACTIVE),
        ),
    )


class AttemptRow(Base):
    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(Id, ForeignKey("runs.id"))
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    backend: Mapped[str] = mapped_column(String(63))  # the backend's name (backends: in modelrunner.yaml)
    runner_id: Mapped[str] = mapped_column(String(128))
    handle: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # sha256 of the attempt's callback token: it may report this attempt's progress, nothing else.
    callback_token_hash: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[dt.datetime]
    exit_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime]
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]

    __table_args__ = (
        UniqueConstraint("run_id", "number"),
        Index("ix_attempts_status_lease_expires_at", "status", "lease_expires_at"),
    )


class OutputRow(Base):
    __tablename__ = "outputs"

    run_id: Mapped[int] = mapped_column(Id, ForeignKey("runs.id"), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    uri: Mapped[str] = mapped_column(Text)


class PartialOutputRow(Base):
    """A file a failed, timed out or cancelled attempt had written to its outputs folder, kept
    for debugging. Never a run's result: the cache, upstream inputs and notifications read
    ``outputs`` only."""

    __tablename__ = "partial_outputs"

    attempt_id: Mapped[int] = mapped_column(Id, ForeignKey("attempts.id"), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    uri: Mapped[str] = mapped_column(Text)


class EventRow(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    run_id: Mapped[int | None] = mapped_column(Id, ForeignKey("runs.id"))
    type: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]]
    created_at: Mapped[dt.datetime]

    __table_args__ = (
        Index("ix_events_run_id_id", "run_id", "id"),
        Index("ix_events_type_id", "type", "id"),  # what triggers read: events of one type, in order
    )


class DatasetSyncRow(Base):
    """One look at a dataset's source for new versions, asked for or due to its poll interval."""

    __tablename__ = "dataset_syncs"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    dataset: Mapped[str] = mapped_column(String(63))
    status: Mapped[str] = mapped_column(String(16))
    walk_all: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(String(16))  # "request" or "poll"
    runner_id: Mapped[str | None] = mapped_column(String(128))
    progress_fraction: Mapped[float | None] = mapped_column(Float)
    progress_message: Mapped[str | None] = mapped_column(Text)
    added: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime]
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]

    __table_args__ = (
        Index("ix_dataset_syncs_dataset_id", "dataset", "id"),
        Index("ix_dataset_syncs_status_id", "status", "id"),  # the poller's look at the queue, every tick
        # At most one sync per dataset queued or running: a second request joins it.
        Index(
            "ux_dataset_syncs_active_dataset",
            "dataset",
            unique=True,
            sqlite_where=text(_ACTIVE_SYNC),
            postgresql_where=text(_ACTIVE_SYNC),
        ),
    )


class DatasetVersionRow(Base):
    """One immutable state of a dataset, recorded by the sync that found it."""

    __tablename__ = "dataset_versions"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    dataset: Mapped[str] = mapped_column(String(63))
    version: Mapped[str] = mapped_column(String(64))
    time: Mapped[dt.datetime]  # when the data took this state: commit time, Last-Modified, or first seen
    discovered_at: Mapped[dt.datetime]
    summary: Mapped[str] = mapped_column(Text, default="")
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    file_count: Mapped[int] = mapped_column(Integer)
    total_size: Mapped[int] = mapped_column(BigInteger)
    meta: Mapped[dict[str, Any]]
    # Where the files are kept when the source holds only its current state (artifact-store prefix).
    snapshot_uri: Mapped[str | None] = mapped_column(Text)
    sync_id: Mapped[int] = mapped_column(Id, ForeignKey("dataset_syncs.id"))

    __table_args__ = (
        UniqueConstraint("dataset", "version"),
        Index("ix_dataset_versions_dataset_time_id", "dataset", "time", "id"),
    )


class ScheduleStateRow(Base):
    """Where a schedule stands: the next tick it fires at. Moved by compare-and-set, so a tick
    fires once whatever the number of servers or restarts."""

    __tablename__ = "schedule_states"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    cron: Mapped[str] = mapped_column(String(160))  # "<cron> <timezone>" the next tick was computed from
    next_fire_at: Mapped[dt.datetime]
    last_fired_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime]


class TriggerCursorRow(Base):
    """The last event a trigger has evaluated; events after it are still to be looked at."""

    __tablename__ = "trigger_cursors"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_event_id: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[dt.datetime]


class FiringRow(Base):
    """One firing of a schedule or a trigger, unique per rule and cause (a tick, an event)."""

    __tablename__ = "firings"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(140))  # "schedule:<name>" or "trigger:<name>"
    cause: Mapped[str] = mapped_column(String(160))  # "tick:<iso time>", "event:<id>", "manual:<uuid>"
    status: Mapped[str] = mapped_column(String(16))  # submitted, skipped, waiting, failed
    run_ids: Mapped[list[int]] = mapped_column(JSON)
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]

    __table_args__ = (
        UniqueConstraint("rule", "cause"),
        Index("ix_firings_rule_id", "rule", "id"),
        Index("ix_firings_status_id", "status", "id"),
    )


class UserRow(Base):
    """A person (or an integration) who signs in with tokens, or with a password in the web UI."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    email: Mapped[str | None] = mapped_column(String(254))
    password_hash: Mapped[str | None] = mapped_column(Text)  # argon2; None: signs in with tokens only
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)  # manages accounts, admin on every model
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime]


class GroupRow(Base):
    """A team; ``access`` and ``routing`` in modelrunner.yaml name groups."""

    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    created_at: Mapped[dt.datetime]


class GroupMemberRow(Base):
    __tablename__ = "group_members"

    group_id: Mapped[int] = mapped_column(Id, ForeignKey("groups.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(Id, ForeignKey("users.id"), primary_key=True)

    __table_args__ = (Index("ix_group_members_user_id", "user_id"),)


class ApiTokenRow(Base):
    """A bearer token of a user. Only the sha256 of its secret is kept; the token is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(Id, ForeignKey("users.id"))
    label: Mapped[str] = mapped_column(String(120), default="")
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]

    __table_args__ = (Index("ix_api_tokens_user_id", "user_id"),)


class WebSessionRow(Base):
    """A browser signed in to the web UI. Its cookie carries a random secret of which only the
    sha256 is kept here; deleting the row signs that browser out, whatever copies of the cookie
    exist. Ends when unused for ``session_idle_seconds`` or older than ``session_max_age_seconds``."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(Id, ForeignKey("users.id"))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime]
    last_seen_at: Mapped[dt.datetime]  # updated at most once a minute, not on every request

    __table_args__ = (Index("ix_web_sessions_user_id", "user_id"),)


# --- notifications: subscriptions, the outbox of deliveries, their attempts ----------------------


class SubscriptionRow(Base):
    """A user's wish to hear about a model's runs or one run, by e-mail, webhook or digest."""

    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(Id, ForeignKey("users.id"))
    model: Mapped[str] = mapped_column(String(63))  # the model (a run's model): what `view` is checked on
    run_id: Mapped[int | None] = mapped_column(Id, ForeignKey("runs.id"))  # None: every top-level run of the model
    notify_on: Mapped[str] = mapped_column(String(16))  # all, failures, results_changed
    # Narrower wishes within the model: one pipeline step's runs, one output's changes, runs
    # with these parameter values (name -> value). None: no narrowing.
    step: Mapped[str | None] = mapped_column(String(63))
    output: Mapped[str | None] = mapped_column(String(1024))
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    channel: Mapped[str] = mapped_column(String(16))  # email, webhook, digest
    url: Mapped[str | None] = mapped_column(Text)  # a webhook's URL
    # A webhook's signing secret, encrypted (Fernet) with a key kept outside the database
    # (auth/secret_keys.py); never shown after creation, wiped on removal.
    secret: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime]
    removed_at: Mapped[dt.datetime | None]

    __table_args__ = (
        Index("ix_subscriptions_user_id_id", "user_id", "id"),
        Index("ix_subscriptions_model", "model"),
        Index("ix_subscriptions_run_id", "run_id"),
    )


class DeliveryRow(Base):
    """The outbox: one notification to send (or held for a digest), created exactly once per
    subscription and event (``key`` is unique), sent by whichever server claims it first."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(160), unique=True)  # the idempotency key receivers see
    kind: Mapped[str] = mapped_column(String(8))  # event (one event) or digest (a summary mail)
    subscription_id: Mapped[int | None] = mapped_column(Id, ForeignKey("subscriptions.id"))  # None: a digest mail
    user_id: Mapped[int] = mapped_column(Id, ForeignKey("users.id"))
    channel: Mapped[str] = mapped_column(String(16))  # email, webhook, digest (an item held for the digest)
    target: Mapped[str] = mapped_column(Text)  # the address or the URL it goes to ("" for held items)
    event_id: Mapped[int | None] = mapped_column(BigInteger)
    run_id: Mapped[int | None] = mapped_column(Id, ForeignKey("runs.id"))
    event_type: Mapped[str] = mapped_column(String(32))  # run.succeeded, run.failed, ..., digest
    payload: Mapped[dict[str, Any]]  # what is sent, fixed when the delivery is created
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # attempts started (claims)
    # pending: when it may be tried next; sending: when the claim (lease) expires.
    next_attempt_at: Mapped[dt.datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    last_error: Mapped[str | None] = mapped_column(Text)
    digest_id: Mapped[int | None] = mapped_column(Id, ForeignKey("deliveries.id"))  # a held item's digest mail
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    delivered_at: Mapped[dt.datetime | None]

    __table_args__ = (
        Index("ix_deliveries_status_next_attempt_at", "status", "next_attempt_at"),  # what is due, every tick
        Index("ix_deliveries_user_id_id", "user_id", "id"),
        Index("ix_deliveries_subscription_id_id", "subscription_id", "id"),
        Index("ix_deliveries_digest_id", "digest_id"),
    )


class DeliveryAttemptRow(Base):
    """One try to send a delivery: when, how long, and what the other side answered."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(Id, ForeignKey("deliveries.id"))
    number: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime]
    duration_seconds: Mapped[float] = mapped_column(Float)
    ok: Mapped[bool] = mapped_column(Boolean)
    http_status: Mapped[int | None] = mapped_column(Integer)  # a webhook's response status
    error: Mapped[str | None] = mapped_column(Text)  # the SMTP or HTTP error, secrets removed

    __table_args__ = (Index("ix_delivery_attempts_delivery_id_id", "delivery_id", "id"),)
