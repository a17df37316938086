"""Every backend ``type`` of modelrunner.yaml and how a backend of that type is built: the one
place a new type is registered (besides its module and its spec class).

The modules of the remote backends are imported only when a backend of their type is declared:
their libraries are optional extras, and a missing one is named (modelrunner/extras.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from modelrunner.artifacts.logs import LogStore
from modelrunner.artifacts.store import ArtifactStore
from modelrunner.backends.base import Backend, RemoteServices
from modelrunner.data.cache import DataCache
from modelrunner.extras import missing_extra


@dataclass(frozen=True)
class BackendContext:
    """What the server gives every backend it builds."""

    services: RemoteServices  # its ``wake`` acts on the backend's reports
    wake_for_work: Callable[[], None]  # claim queued runs for the backend now
    artifacts: ArtifactStore
    logs: LogStore
    data_cache: DataCache
    state_dir: Path
    local_slots: int
    grace_seconds: float


def _local(name: str, spec: Any, context: BackendContext) -> Backend:
    from modelrunner.backends.local import LocalBackend, LocalConfig
    from modelrunner.execution.confinement import model_user

    config = LocalConfig(
        spec.slots or context.local_slots,
        context.grace_seconds,
        context.state_dir,
        user=model_user(spec.run_as, spec.allow_root),
    )
    return LocalBackend(config, context.artifacts, context.logs, wake=context.services.wake, data=context.data_cache)


def _worker(name: str, spec: Any, context: BackendContext) -> Backend:
    from modelrunner.backends.worker_pool import WorkerPool

    # A worker asking for work: take queued runs for it now, not at the next poll.
    return WorkerPool(name, spec, replace(context.services, wake=context.wake_for_work))


def _dask(name: str, spec: Any, context: BackendContext) -> Backend:
    from modelrunner.backends.dask import DaskBackend

    return DaskBackend(name, spec, context.services)


def _aws_ecs(name: str, spec: Any, context: BackendContext) -> Backend:
    from modelrunner.backends.aws_ecs import AwsEcsBackend

    return AwsEcsBackend(name, spec, context.services)


def _aws_batch(name: str, spec: Any, context: BackendContext) -> Backend:
    from modelrunner.backends.aws_batch import AwsBatchBackend

    return AwsBatchBackend(name, spec, context.services)


def _azure_batch(name: str, spec: Any, context: BackendContext) -> Backend:
    from modelrunner.backends.azure_batch import AzureBatchBackend

    return AzureBatchBackend(name, spec, context.services)


def _kubernetes(name: str, spec: Any, context: BackendContext) -> Backend:
    from modelrunner.backends.kubernetes import KubernetesBackend

    return KubernetesBackend(name, spec, context.services)


def _slurm(name: str, spec: Any, context: BackendContext) -> Backend:
    from modelrunner.backends.slurm import SlurmBackend

    return SlurmBackend(name, spec, context.services, state_dir=context.state_dir)


def _container(name: str, spec: Any, context: BackendContext) -> Backend:
    from modelrunner.backends.container import ContainerBackend
    from modelrunner.backends.local import LocalConfig

    config = LocalConfig(spec.slots or context.local_slots, context.grace_seconds, context.state_dir)
    return ContainerBackend(
        name, spec, config, context.artifacts, context.logs, wake=context.services.wake, data=context.data_cache
    )


# Keyed by the ``type`` of the backend's spec (spec/backend_spec.py BackendSpec).
BUILDERS: dict[str, Callable[[str, Any, BackendContext], Backend]] = {
    "local": _local,
    "worker": _worker,
    "dask": _dask,
    "aws-ecs": _aws_ecs,
    "aws-batch": _aws_batch,
    "azure-batch": _azure_batch,
    "kubernetes": _kubernetes,
    "slurm": _slurm,
    "container": _container,
}


def build(name: str, spec: Any, context: BackendContext) -> Backend:
    """The backend ``name`` as its ``spec`` configures it; MissingExtra when its type's library is
    not installed."""
    try:
        return BUILDERS[spec.type](name, spec, context)
    except ImportError as exc:
        missing = missing_extra(exc)
        if missing is None:
            raise
        raise missing from exc
