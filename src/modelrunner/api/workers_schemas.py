"""What ``modelrunner worker`` and the server say to each other (api/workers_routes.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from modelrunner.engine.states import AttemptStatus
from modelrunner.store.row_ids import INT64_MAX


class ClaimRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    worker: str = Field(min_length=1, max_length=200, description="Who claims: shown with the attempt, e.g. host:pid")


class ClaimedAttempt(BaseModel):
    attempt_id: int
    job: dict[str, Any] = Field(description="The job description, as `modelrunner exec --job` reads it")
    callback_token: str = Field(description="The attempt's own token: every later call about it carries it")
    heartbeat_seconds: float = Field(description="Seconds between heartbeats")
    lease_seconds: float = Field(description="Seconds without a heartbeat after which the attempt is lost")


class HeartbeatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pid: int | None = Field(default=None, description="The model's process id, once it runs")
    host: str | None = Field(default=None, max_length=200)


class HeartbeatAnswer(BaseModel):
    action: Literal["continue", "stop"]
    reason: AttemptStatus | None = Field(default=None, description="Why to stop: the attempt's ending")
    message: str = ""


class StoredKeys(BaseModel):
    keys: list[str]


class StoredUpload(BaseModel):
    size: int = Field(description="Bytes")
    sha256: str
    uri: str


class OutputFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    size: int = Field(ge=0, le=INT64_MAX, description="Bytes")
    sha256: str
    uri: str


class FinishReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: AttemptStatus
    # Stored in a 32-bit column on PostgreSQL; processes exit with far smaller numbers.
    exit_code: int | None = Field(default=None, ge=-(2**31), le=2**31 - 1)
    error: str | None = Field(default=None, max_length=10_000)
    outputs: list[OutputFile] = Field(default_factory=list)
    # What a failed, timed out or cancelled attempt had written (stored like outputs; never a result).
    partial_outputs: list[OutputFile] = Field(default_factory=list)
