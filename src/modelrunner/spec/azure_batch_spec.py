"""``type: azure-batch`` in ``modelrunner.yaml``: an Azure Batch account, the pool (and job) that
runs the attempts, the credentials to use, and the pools of resource classes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ACCOUNT_NAME = re.compile(r"^[a-z0-9]{3,24}$")
_KEY_FIELDS = ("account_key", "key", "shared_key")


def batch_id(text: str) -> str:
    """``text`` as an id Batch takes (at most 64 characters): shortened, with a hash of the
    whole to keep it unique, when longer."""
    if len(text) <= 64:
        return text
    return f"{text[:55]}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def _check_batch_id(value: str | None) -> str | None:
    if value is not None and not _BATCH_ID.match(value):
        raise ValueError(f"{value!r} is not an Azure Batch id: letters, digits, '-' and '_', at most 64")
    return value


def _looks_like_a_key(value: str) -> bool:
    """Whether ``value`` looks like a shared key (base64 of 32 bytes or more) rather than the
    name of the environment variable holding one."""
    if len(value) < 40:
        return False
    try:
        return len(base64.b64decode(value, validate=True)) >= 30
    except (binascii.Error, ValueError):
        return False


class AzureBatchTarget(BaseModel):
    """Where one attempt goes: the job (bound to its pool) and the image, if any."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    pool_id: str
    image: str | None


class AzureBatchClassSpec(BaseModel):
    """Where the runs of one resource class go on Azure Batch. Batch binds a job to one pool: a
    class on another pool has a job of its own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pool_id: str = Field(description="The pool of the class's runs")
    job_id: str | None = Field(
        default=None,
        description="Its job: the backend's job on the backend's pool, else <backend job>-<class> (created if missing)",
    )
    image: str | None = Field(default=None, description="Its image (e.g. one with CUDA); the backend's by default")

    _ids = field_validator("pool_id", "job_id")(_check_batch_id)


class AzureBatchBackendSpec(BaseModel):
    """``type: azure-batch``: each attempt is one task of an Azure Batch job, running ``python -m
    modelrunner exec`` on the pool's nodes (in ``image`` on a container-enabled pool). The account
    key is read from the environment variable ``account_key_env`` names (with ``account_name``);
    without one, Microsoft Entra ID signs in (azure-identity's DefaultAzureCredential). Never a
    key in this file. Needs ``pip install 'modelrunner[azure]'`` on the server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["azure-batch"]
    account_url: str = Field(description="The Batch account's URL, https://<account>.<region>.batch.azure.com")
    pool_id: str = Field(description="The pool of runs without a class in `classes`")
    job_id: str | None = Field(
        default=None, description="Their job; modelrunner-<backend name> by default (created if missing)"
    )
    account_name: str | None = Field(default=None, description="The account's name, with `account_key_env`")
    account_key_env: str | None = Field(
        default=None,
        description="The NAME of the environment variable holding the account's shared key; "
        "without it, Microsoft Entra ID (DefaultAzureCredential)",
    )
    image: str | None = Field(
        default=None, description="Run each task in this image (the pool must be container-enabled)"
    )
    python: str | None = Field(
        default=None,
        min_length=1,
        description="The interpreter with modelrunner installed, on the nodes or in the image; `python` by default",
    )
    cpu_slots: bool = Field(
        default=False,
        description="A model's `cpu` (rounded up) becomes its task's requiredSlots: for pools whose "
        "taskSlotsPerNode counts the nodes' vCPUs",
    )
    slots: int = Field(default=10, ge=1, description="How many tasks are submitted or running at once")
    classes: dict[str, AzureBatchClassSpec] = Field(
        default_factory=dict, description="Resource class (`resources.class`) -> {pool_id, job_id, image}"
    )

    @model_validator(mode="before")
    @classmethod
    def _no_key_here(cls, value: Any) -> Any:
        # Said before anything else, and without the value: a key must never be echoed anywhere.
        if isinstance(value, dict):
            for field in _KEY_FIELDS:
                if field in value:
                    raise ValueError(
                        f"`{field}` is not allowed: put the account key into an environment variable of the "
                        "server and name that variable in `account_key_env` (never the key itself)"
                    )
        return value

    @field_validator("account_url")
    @classmethod
    def _batch_account_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.username or parts.password:
            raise ValueError("must not hold credentials: name them with account_name and account_key_env")
        if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/") or parts.query:
            raise ValueError(f"{value!r} is not a Batch account URL like https://<account>.<region>.batch.azure.com")
        return f"https://{parts.netloc}"

    @field_validator("account_name")
    @classmethod
    def _account_name(cls, value: str | None) -> str | None:
        if value is not None and not _ACCOUNT_NAME.match(value):
            raise ValueError(f"{value!r} is not a Batch account name (3 to 24 lowercase letters and digits)")
        return value

    @field_validator("account_key_env")
    @classmethod
    def _names_a_variable(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if _looks_like_a_key(value) or not _ENV_NAME.match(value):
            # Not repeated in the message: it may well be the key itself.
            raise ValueError(
                "must be the NAME of an environment variable holding the account key (e.g. AZURE_BATCH_KEY), "
                "not the key itself: never write the key in modelrunner.yaml"
            )
        return value

    _ids = field_validator("pool_id", "job_id")(_check_batch_id)

    @model_validator(mode="after")
    def _consistent(self) -> AzureBatchBackendSpec:
        if (self.account_name is None) != (self.account_key_env is None):
            raise ValueError("give account_name and account_key_env together (or neither, for Microsoft Entra ID)")
        pools = {self.job_id: self.pool_id} if self.job_id else {}
        for name, chosen in self.classes.items():
            if chosen.job_id is None:
                continue
            if pools.setdefault(chosen.job_id, chosen.pool_id) != chosen.pool_id:
                raise ValueError(
                    f"classes.{name}: job {chosen.job_id} is on pool {pools[chosen.job_id]} (a job has one pool)"
                )
        return self

    def target(self, backend: str, resource_class: str | None) -> AzureBatchTarget:
        """The job, pool and image of the runs of ``resource_class`` on the backend named ``backend``."""
        job_id = self.job_id or batch_id(f"modelrunner-{backend}")
        chosen = self.classes.get(resource_class) if resource_class is not None else None
        if chosen is None:
            return AzureBatchTarget(job_id=job_id, pool_id=self.pool_id, image=self.image)
        if chosen.job_id is not None:
            class_job = chosen.job_id
        elif chosen.pool_id == self.pool_id:
            class_job = job_id
        else:
            class_job = batch_id(f"{job_id}-{resource_class}")
        return AzureBatchTarget(job_id=class_job, pool_id=chosen.pool_id, image=chosen.image or self.image)

    def targets(self, backend: str) -> list[AzureBatchTarget]:
        """Every job of the backend (with its pool), the default one first."""
        found: dict[str, AzureBatchTarget] = {}
        for name in [None, *self.classes]:
            target = self.target(backend, name)
            found.setdefault(target.job_id, target)
        return list(found.values())
