"""``backends:`` and ``routing:`` in ``modelrunner.yaml``: where runs execute, and who goes where."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from modelrunner.spec.azure_batch_spec import AzureBatchBackendSpec
from modelrunner.spec.kubernetes_spec import KubernetesBackendSpec
from modelrunner.spec.names import check_name

DEFAULT_BACKEND = "local"


class LocalBackendSpec(BaseModel):
    """``type: local``: processes on the server's machine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["local"] = "local"
    slots: int | None = Field(default=None, ge=1, description="CPU slots; the server's --slots by default")
    run_as: str | None = Field(
        default=None,
        min_length=1,
        description="The unprivileged user (name or uid) models run as; the server must run as root. By default, "
        "a server running as root runs them as `modelrunner-models` where that user exists",
    )
    allow_root: bool = Field(
        default=True, description="false: refuse to start when models would run as root (no `run_as` user)"
    )


class ContainerBackendSpec(BaseModel):
    """``type: container``: image models (``image:`` in model.yaml) as containers on the server's
    machine, run with podman or docker under the model contract (its folders mounted, its
    variables naming them inside the container)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["container"]
    engine: Literal["podman", "docker"] | None = Field(
        default=None, description="The container engine; the first of podman and docker installed by default"
    )
    slots: int | None = Field(default=None, ge=1, description="CPU slots; the server's --slots by default")
    network: str = Field(
        default="none",
        min_length=1,
        description="The containers' network: `none` (no network, the default), `host`, or a network of the engine",
    )
    user: str | None = Field(
        default=None,
        pattern=r"^[0-9]+(:[0-9]+)?$",
        description="uid[:gid] models run as inside the container; by default the ids of `modelrunner-models` "
        "where that user exists, else 65534 (nobody)",
    )


_SCHEDULER_ADDRESS = re.compile(r"^(tcp|tls|inproc|ws|wss|ucx)://\S+$")


class DaskBackendSpec(BaseModel):
    """``type: dask``: attempts as tasks of a Dask cluster (dask.distributed), reached through its
    scheduler. Needs ``pip install 'modelrunner[dask]'`` on the server and on every worker."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["dask"]
    scheduler: str = Field(description="The scheduler's address, e.g. tcp://10.0.0.5:8786")
    slots: int = Field(
        default=4, ge=1, description="How many model CPUs (a model's `resources.cpu`, rounded up) run at once"
    )
    resources: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Dask worker resources each attempt holds per CPU it asks for: `{CPU: 1}` makes a model with "
            "`cpu: 2` hold 2 of `CPU` on a worker started with `--resources CPU=8`. Empty: any worker thread"
        ),
    )

    @field_validator("scheduler")
    @classmethod
    def _valid_address(cls, value: str) -> str:
        if not _SCHEDULER_ADDRESS.match(value):
            raise ValueError(f"{value!r} is not a Dask scheduler address like tcp://host:8786")
        return value

    @field_validator("resources")
    @classmethod
    def _positive_amounts(cls, value: dict[str, float]) -> dict[str, float]:
        for name, amount in value.items():
            if amount <= 0:
                raise ValueError(f"the amount of {name!r} must be greater than 0")
        return value


class WorkerBackendSpec(BaseModel):
    """``type: worker``: a pool served by ``modelrunner worker --pool NAME`` processes on any
    machine, which claim attempts from the server over HTTP and keep them by heartbeat."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["worker"]
    slots: int = Field(default=16, ge=1, description="How many attempts are handed out to workers at once")
    lease_seconds: float = Field(
        default=30.0,
        gt=0,
        description="A worker that sends no heartbeat for this long has lost its attempt (it runs again elsewhere)",
    )


class AwsEcsBackendSpec(BaseModel):
    """``type: aws-ecs``: each attempt is one ECS task on Fargate or Fargate Spot, running
    ``python -m modelrunner exec`` in ``container`` of ``task_definition`` (an image with
    modelrunner installed). Needs ``pip install 'modelrunner[aws]'`` on the server; credentials
    come from boto3's usual chain (environment, profile, instance or task role), never from here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["aws-ecs"]
    cluster: str = Field(description="The ECS cluster's name or ARN")
    task_definition: str = Field(description="family, family:revision or ARN of the task definition")
    container: str = Field(description="The container of the task definition that runs the attempt")
    subnets: list[str] = Field(min_length=1, description="Subnets of the tasks (awsvpc networking)")
    security_groups: list[str] = Field(default_factory=list)
    assign_public_ip: bool = Field(default=False, description="Needed in public subnets without a NAT gateway")
    capacity: Literal["FARGATE", "FARGATE_SPOT"] = "FARGATE"
    on_demand_last_attempt: bool = Field(
        default=True,
        description="With FARGATE_SPOT: run on FARGATE an attempt after which no retry follows an interruption",
    )
    region: str | None = Field(default=None, description="The AWS region; boto3's default region when left out")
    endpoint_url: str | None = Field(default=None, description="Another ECS endpoint (an emulator such as moto)")
    slots: int = Field(default=10, ge=1, description="How many tasks run at once")


class AwsBatchTarget(BaseModel):
    """Where the runs of one resource class go on AWS Batch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_queue: str
    job_definition: str


class AwsBatchBackendSpec(BaseModel):
    """``type: aws-batch``: each attempt is one AWS Batch job running ``python -m modelrunner
    exec`` (the job definition's image must have modelrunner installed). The run's resource class
    chooses the job queue and job definition (``classes``); other runs go to ``job_queue`` and
    ``job_definition``. Needs ``pip install 'modelrunner[aws]'`` on the server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["aws-batch"]
    job_queue: str = Field(description="Name or ARN of the job queue of runs without a class in `classes`")
    job_definition: str = Field(description="name, name:revision or ARN of their job definition")
    classes: dict[str, AwsBatchTarget] = Field(
        default_factory=dict, description="Resource class (`resources.class`) -> {job_queue, job_definition}"
    )
    region: str | None = Field(default=None, description="The AWS region; boto3's default region when left out")
    endpoint_url: str | None = Field(default=None, description="Another Batch endpoint (an emulator such as moto)")
    slots: int = Field(default=10, ge=1, description="How many jobs are submitted or running at once")

    def target(self, resource_class: str | None) -> AwsBatchTarget:
        """The queue and definition of runs of ``resource_class``."""
        chosen = self.classes.get(resource_class) if resource_class is not None else None
        return chosen or AwsBatchTarget(job_queue=self.job_queue, job_definition=self.job_definition)


_SBATCH_OWN_OPTIONS = ("--job-name", "-J", "--output", "-o", "--error", "-e", "--parsable", "--wrap", "--chdir", "-D")


def _check_sbatch_args(value: list[str]) -> list[str]:
    for argument in value:
        if not argument.startswith("-"):
            raise ValueError(f"{argument!r} is not an sbatch option: write options as --name=value")
        if argument.split("=", 1)[0] in _SBATCH_OWN_OPTIONS:
            raise ValueError(f"{argument!r} is set by modelrunner itself for each attempt")
    return value


def _check_slurm_name(value: str | None) -> str | None:
    if value is not None and (not value or any(c.isspace() for c in value)):
        raise ValueError(f"{value!r} is not a Slurm partition or account name")
    return value


class SlurmClassSpec(BaseModel):
    """How the attempts of one resource class run on Slurm; what it leaves out comes from the
    backend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partition: str | None = Field(default=None, description="The partition (sbatch --partition)")
    account: str | None = Field(default=None, description="The account charged (sbatch --account)")
    sbatch_args: list[str] = Field(default_factory=list, description="More sbatch options, after the backend's")

    _names = field_validator("partition", "account")(_check_slurm_name)
    _args = field_validator("sbatch_args")(_check_sbatch_args)


class SlurmBackendSpec(BaseModel):
    """``type: slurm``: each attempt is one Slurm batch job (``sbatch``) running ``modelrunner
    exec``; the cluster's nodes need modelrunner installed and the artifact store reachable."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["slurm"]
    partition: str | None = Field(default=None, description="The partition; the cluster's default without it")
    account: str | None = Field(default=None, description="The account charged; the user's default without it")
    slots: int = Field(default=8, ge=1, description="How many attempts are submitted to Slurm at once")
    sbatch_args: list[str] = Field(
        default_factory=list, description="More sbatch options for every attempt, e.g. ['--qos=normal']"
    )
    python: str = Field(
        default="python3", min_length=1, description="The interpreter on the nodes that has modelrunner installed"
    )
    workdir: str | None = Field(
        default=None,
        description="A folder the server and the nodes share, for job files and Slurm's output; "
        "<state dir>/slurm/<backend> by default",
    )
    classes: dict[str, SlurmClassSpec] = Field(
        default_factory=dict, description="Resource classes in Slurm's terms: {gpu: {partition: gpu}}"
    )

    _names = field_validator("partition", "account")(_check_slurm_name)
    _args = field_validator("sbatch_args")(_check_sbatch_args)


def _local_unless_typed(value: Any) -> Any:
    # A backend without `type` is a local one, as it was before there were other types.
    if isinstance(value, dict) and "type" not in value:
        return {**value, "type": "local"}
    return value


BackendSpec = Annotated[
    LocalBackendSpec
    | DaskBackendSpec
    | WorkerBackendSpec
    | AwsEcsBackendSpec
    | AwsBatchBackendSpec
    | AzureBatchBackendSpec
    | KubernetesBackendSpec
    | SlurmBackendSpec
    | ContainerBackendSpec,
    Field(discriminator="type"),
    BeforeValidator(_local_unless_typed),
]
"""What ``backends.<name>`` in modelrunner.yaml declares; ``type`` chooses the kind."""

BACKEND_TYPES = frozenset(
    {"local", "dask", "worker", "aws-ecs", "aws-batch", "azure-batch", "kubernetes", "slurm", "container"}
)


class RoutingRule(BaseModel):
    """``{group: spot-team, backend: spot}``: runs submitted by members of ``group`` (of the models
    matching ``models``) go to ``backend``. The first matching rule wins."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    group: str
    backend: str
    models: list[str] = Field(default_factory=lambda: ["*"], description="Model names or globs")

    @field_validator("models", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("group", "backend")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return check_name(value)
