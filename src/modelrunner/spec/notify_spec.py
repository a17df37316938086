"""``notifications:`` in ``modelrunner.yaml``: how e-mail is sent, how webhooks are retried, when
digests go out, and the address links in notifications point at.

Secrets are never written here: ``email.password_env`` names the environment variable that holds
the SMTP password, and a webhook's secret lives with its subscription. Error messages of this
module never repeat a value they reject, so a password typed into the wrong field does not end up
in ``modelrunner check`` output or a log.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modelrunner.spec.automation_spec import check_cron, check_timezone

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SmtpSecurity(StrEnum):
    STARTTLS = "starttls"  # plain connection upgraded with STARTTLS (port 587)
    SSL = "ssl"  # TLS from the first byte (port 465)
    NONE = "none"  # no encryption: a relay on localhost or a test server only


_DEFAULT_PORTS = {SmtpSecurity.STARTTLS: 587, SmtpSecurity.SSL: 465, SmtpSecurity.NONE: 25}
EMAIL_TIMEOUT = 30.0
EMAIL_ATTEMPTS = 8
EMAIL_BACKOFF_SECONDS = 30.0


class EmailSpec(BaseModel):
    """``notifications.email``: the SMTP server that sends notification mails and digests."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535, description="587 (starttls), 465 (ssl) or 25 by default")
    username: str | None = Field(default=None, description="Sign in to the SMTP server as this user")
    password_env: str | None = Field(
        default=None, description="The NAME of the environment variable holding the SMTP password"
    )
    sender: str = Field(description="The From address, e.g. modelrunner@example.org")
    security: SmtpSecurity = SmtpSecurity.STARTTLS
    timeout: float = Field(default=EMAIL_TIMEOUT, gt=0, le=600, description="Seconds one SMTP conversation may take")
    attempts: int = Field(default=EMAIL_ATTEMPTS, ge=1, le=50, description="Tries per mail before it is marked failed")
    backoff_seconds: float = Field(
        default=EMAIL_BACKOFF_SECONDS, gt=0, description="Delay before the first retry; it doubles"
    )

    @model_validator(mode="before")
    @classmethod
    def _no_password_here(cls, value: Any) -> Any:
        if isinstance(value, dict) and "password" in value:
            raise ValueError(
                "password: never write the SMTP password in modelrunner.yaml; put it in an environment "
                "variable of the server and name that variable in password_env"
            )
        return value

    @field_validator("password_env")
    @classmethod
    def _valid_env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            # The value is not shown: it may well be the password itself.
            raise ValueError("must be the name of an environment variable (e.g. SMTP_PASSWORD), not the password")
        return value

    @field_validator("sender")
    @classmethod
    def _valid_sender(cls, value: str) -> str:
        if "@" not in value or any(c.isspace() for c in value.strip()):
            raise ValueError(f"{value!r} is not an e-mail address")
        return value.strip()

    @model_validator(mode="after")
    def _password_for_user(self) -> EmailSpec:
        if self.username is not None and self.password_env is None:
            raise ValueError("username needs password_env (the environment variable holding the password)")
        return self

    @property
    def smtp_port(self) -> int:
        return self.port or _DEFAULT_PORTS[self.security]


class WebhooksSpec(BaseModel):
    """``notifications.webhooks``: how webhook deliveries are timed and retried."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: int = Field(default=5, ge=1, le=50, description="Tries per delivery before it is marked failed")
    backoff_seconds: float = Field(default=10.0, gt=0, description="Delay before the first retry; it doubles")
    timeout_seconds: float = Field(default=10.0, gt=0, le=300, description="Seconds one POST may take")


class DigestSpec(BaseModel):
    """``notifications.digest``: when digest subscribers get their summary mail."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cron: str = Field(default="0 6 * * *", description="Five-field cron expression, read in `timezone`")
    timezone: str = "UTC"

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        return check_cron(value)

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        return check_timezone(value)


class NotificationsSpec(BaseModel):
    """``notifications:`` in ``modelrunner.yaml``. Webhooks work without any of it; e-mail needs
    ``email``, digests need ``email`` and ``digest``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str | None = Field(
        default=None,
        description="The server's address as people reach it, for links in mails and webhooks; "
        "http://<host>:<port> of this server by default",
    )
    email: EmailSpec | None = None
    webhooks: WebhooksSpec = WebhooksSpec()
    digest: DigestSpec | None = None

    @field_validator("base_url")
    @classmethod
    def _valid_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


def output_path(value: str, what: str) -> str:
    """``value`` as the path of a run's output; ValueError naming ``what`` otherwise."""
    return _output_path(value, what)


def _output_path(value: str, what: str) -> str:
    text = value.strip()
    if not text or text.startswith("/") or "\\" in text or ".." in text.split("/"):
        raise ValueError(f"{what} must be a relative path among the run's outputs (e.g. summary.md)")
    return text


class ModelNotifySpec(BaseModel):
    """``notify:`` in model.yaml: what the model itself says in the notifications of its runs.

    Paths are those of the run's outputs. A pipeline's outputs sit in one folder per step (and
    fan-out item), so ``report/summary.md`` is step ``report``'s ``summary.md``; a step's own run
    finds it under that name too, or under its bare name (``summary.md``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    summary: str | None = Field(
        default=None,
        description="An output in Markdown (e.g. summary.md) that becomes the body of the run's mails, "
        "its entry in digests and its webhook payloads",
    )
    changes: list[str] | None = Field(
        default=None,
        min_length=1,
        description="The outputs (paths or glob patterns such as results/*.csv) whose bytes decide whether "
        "results changed; every output by default",
    )

    @field_validator("summary")
    @classmethod
    def _valid_summary(cls, value: str | None) -> str | None:
        return None if value is None else _output_path(value, "summary")

    @field_validator("changes")
    @classmethod
    def _valid_changes(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [_output_path(path, "each of changes") for path in value]
