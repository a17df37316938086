"""What the ``kubernetes`` backend sends to the cluster and reads back, without talking to it: the
batch/v1 Job of an attempt, and what a Job and its pod say about how the attempt runs or ended
(:func:`read_job`). The backend (kubernetes.py) does the talking.

The objects are the official client's models, so what is built here is what goes over the wire
(``ApiClient().sanitize_for_serialization``), and what is read is what the API returned."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelrunner.backends.exec_attempts import EXEC_COMMAND, attempt_name, stop_reason
from modelrunner.backends.kubernetes_api import k8s
from modelrunner.engine.states import AttemptStatus
from modelrunner.errors import ModelrunnerError
from modelrunner.execution.job import AttemptJob
from modelrunner.spec.kubernetes_spec import KubernetesBackendSpec
from modelrunner.spec.model_spec import Resources

MANAGED_BY = "app.kubernetes.io/managed-by"
ATTEMPT_LABEL = "modelrunner.io/attempt-id"
RUN_LABEL = "modelrunner.io/run-id"
NUMBER_LABEL = "modelrunner.io/attempt"
MODEL_ANNOTATION = "modelrunner.io/model"
STOP_ANNOTATION = "modelrunner.io/stop-reason"
"""Where cancel writes modelrunner's reason for deleting the Job (``modelrunner: cancelled``)."""
CONTAINER = "modelrunner"

START_ALLOWANCE = 300
"""Seconds the pod's deadline allows beyond the timeout and grace period, for what happens before
the model runs and the engine's clock starts: pulling the image, starting the container."""

PULL_PATIENCE = dt.timedelta(minutes=2)
"""How long a pod may fail to pull its image (a registry that hiccups, a rate limit) before the
attempt ends failed."""

_NEVER_PULLS = ("InvalidImageName", "ErrImageNeverPull")  # no retry can help
_PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff")  # kubelet retries: maybe a passing problem
# Pod reasons of capacity taken back, besides the DisruptionTarget condition (which newer
# clusters set for eviction, preemption, node shutdown, taints and pod garbage collection).
_TAKEN_BACK = ("Evicted", "Preempting", "NodeLost", "NodeShutdown", "Shutdown", "Terminated")
_DEADLINE = "DeadlineExceeded"
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T|k)i?B?\s*$")


def kubernetes_memory(memory: str) -> str:
    """``512Mi``, ``4Gi``, ``2G``, ``1GiB`` as a Kubernetes quantity; ModelrunnerError for a
    value without a unit."""
    found = _MEMORY.match(memory)
    if found is None:
        raise ModelrunnerError(f"memory {memory!r} is not an amount like 512Mi or 4Gi")
    unit = "k" if found.group(2) == "K" else found.group(2)
    return f"{found.group(1)}{unit}"


def kubernetes_cpu(cpu: float) -> str:
    """CPUs as a Kubernetes quantity: whole CPUs, else millicores (rounded up)."""
    return str(int(cpu)) if float(cpu).is_integer() else f"{math.ceil(cpu * 1000)}m"


def resource_requirements(resources: Resources, gpu_resource: str) -> Any:
    """What the model asks for, as requests and limits. A model that gives no ``cpu`` asks for
    1 CPU (the platform's default) without a limit; without ``memory``, no memory is asked for
    (the namespace's LimitRange, if any, decides)."""
    requests = {"cpu": kubernetes_cpu(resources.cpu or 1)}
    limits = {}
    if resources.cpu is not None:
        limits["cpu"] = requests["cpu"]
    if resources.memory is not None:
        requests["memory"] = limits["memory"] = kubernetes_memory(resources.memory)
    if resources.gpus:
        limits[gpu_resource] = str(resources.gpus)
    return k8s.V1ResourceRequirements(requests=requests, limits=limits or None)


def pod_deadline(resources: Resources, grace_seconds: float) -> int | None:
    """The pod's ``activeDeadlineSeconds``: the net that stops the pod (and its bill) should the
    server that times the attempt out be gone. The engine times out first: the deadline counts
    from when a node took the pod, before the image is pulled (see START_ALLOWANCE), and, unlike
    the Job's own deadline, not while the pod waits for a node."""
    if resources.timeout is None:
        return None
    return math.ceil(resources.timeout + grace_seconds) + START_ALLOWANCE


def labels_of(job: AttemptJob) -> dict[str, str]:
    return {
        MANAGED_BY: "modelrunner",
        ATTEMPT_LABEL: str(job.attempt_id),
        RUN_LABEL: str(job.run_id),
        NUMBER_LABEL: str(job.attempt_number),
    }


def selector(attempt_ids: Sequence[int]) -> str:
    """The label selector of these attempts' Jobs and pods."""
    return f"{MANAGED_BY}=modelrunner,{ATTEMPT_LABEL} in ({','.join(str(i) for i in sorted(attempt_ids))})"


def job_manifest(
    job: AttemptJob, config: KubernetesBackendSpec, environment: dict[str, str], grace_seconds: float
) -> Any:
    """The batch/v1 Job that runs ``job``: one pod, never restarted or retried by Kubernetes
    (the engine decides about another attempt), placed as the job's resource class says."""
    placement = config.placement(job.resources.resource_class)
    container = k8s.V1Container(
        name=CONTAINER,
        image=placement.image,
        command=EXEC_COMMAND,
        env=[k8s.V1EnvVar(name=name, value=value) for name, value in environment.items()],
        resources=resource_requirements(job.resources, config.gpu_resource),
    )
    pod = k8s.V1PodSpec(
        containers=[container],
        restart_policy="Never",
        termination_grace_period_seconds=math.ceil(grace_seconds),
        active_deadline_seconds=pod_deadline(job.resources, grace_seconds),
        node_selector=placement.node_selector or None,
        tolerations=[k8s.V1Toleration(**t.model_dump(exclude_none=True)) for t in placement.tolerations] or None,
        priority_class_name=placement.priority_class_name,
        service_account_name=placement.service_account,
        image_pull_secrets=[k8s.V1LocalObjectReference(name=name) for name in config.image_pull_secrets] or None,
    )
    labels = labels_of(job)
    return k8s.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=k8s.V1ObjectMeta(
            name=attempt_name(job.attempt_id),
            labels=labels,
            annotations={MODEL_ANNOTATION: f"{job.model_name}@{job.model_version}"},
        ),
        spec=k8s.V1JobSpec(
            backoff_limit=0,
            ttl_seconds_after_finished=config.ttl_seconds_after_finished,
            template=k8s.V1PodTemplateSpec(metadata=k8s.V1ObjectMeta(labels=dict(labels)), spec=pod),
        ),
    )


def stop_patch(reason: AttemptStatus) -> list[dict[str, str]]:
    """A JSON patch that records modelrunner's reason for stopping the Job in its annotations."""
    path = "/metadata/annotations/" + STOP_ANNOTATION.replace("~", "~0").replace("/", "~1")
    return [{"op": "add", "path": path, "value": stop_reason(reason)}]


@dataclass(frozen=True)
class JobState:
    """What a Job and its pod say about an attempt."""

    running: bool  # the container runs
    started_at: dt.datetime | None  # when it started, if it did
    ended: bool  # Kubernetes ended the Job: Complete or Failed
    exit_code: int | None
    reason: str | None  # Kubernetes' words for how the Job ended
    stop: str | None  # modelrunner's own reason: what cancel recorded, or the deadline it set
    taken_back: str | None  # Kubernetes took the pod's capacity back: eviction, preemption, a node gone
    refused: str | None  # the pod cannot start as asked: an image that cannot be pulled


def read_job(job: Any, pods: Sequence[Any], now: dt.datetime) -> JobState:
    """What ``job`` (a V1Job) and its ``pods`` (V1Pod) say, as the API returned them, at ``now``."""
    ended = _ended_conditions(job)
    pod = max(pods, key=_created, default=None)  # one pod per Job (backoffLimit 0); the newest if more
    state = _container_state(pod)
    annotations = job.metadata.annotations or {}
    deadline = any(c.reason == _DEADLINE for c in ended) or (pod is not None and _reason(pod) == _DEADLINE)
    stop = annotations.get(STOP_ANNOTATION) or (stop_reason(AttemptStatus.TIMED_OUT) if deadline else None)
    terminated = state.terminated if state is not None else None
    running = state is not None and state.running is not None
    started = state.running.started_at if running else terminated.started_at if terminated is not None else None
    return JobState(
        running=running or bool(job.status and job.status.ready),
        started_at=started,
        ended=bool(ended),
        exit_code=terminated.exit_code if terminated is not None else None,
        reason=_said(ended, terminated) if ended else None,
        stop=stop,
        taken_back=_taken_back(pod),
        refused=_refused(pod, state, now),
    )


def job_ended(job: Any) -> bool:
    """Whether Kubernetes ended the Job (Complete or Failed)."""
    return bool(_ended_conditions(job))


def _ended_conditions(job: Any) -> list[Any]:
    conditions = (job.status.conditions if job.status else None) or []
    return [c for c in conditions if c.type in ("Complete", "Failed") and c.status == "True"]


def _created(pod: Any) -> dt.datetime:
    return pod.metadata.creation_timestamp or dt.datetime.min.replace(tzinfo=dt.UTC)


def _reason(pod: Any) -> str | None:
    return pod.status.reason if pod.status is not None else None


def _container_state(pod: Any) -> Any:
    statuses = (pod.status.container_statuses if pod is not None and pod.status else None) or []
    return next((s.state for s in statuses if s.name == CONTAINER), None)


def _words(reason: str | None, message: str | None) -> str:
    return ": ".join(part for part in (reason, message) if part) or "no reason given"


def _said(ended: Sequence[Any], terminated: Any) -> str:
    said = "; ".join(f"Job {c.type.lower()}: {_words(c.reason, c.message)}" for c in ended)
    if terminated is not None:
        said += f"; container: {_words(terminated.reason, terminated.message)} (exit status {terminated.exit_code})"
    return said


def _taken_back(pod: Any) -> str | None:
    if pod is None or pod.status is None:
        return None
    for condition in pod.status.conditions or []:
        if condition.type == "DisruptionTarget" and condition.status == "True":
            return f"Kubernetes took the pod back: {_words(condition.reason, condition.message)}"
    if _reason(pod) in _TAKEN_BACK:
        return f"Kubernetes took the pod back: {_words(pod.status.reason, pod.status.message)}"
    return None


def _refused(pod: Any, state: Any, now: dt.datetime) -> str | None:
    waiting = state.waiting if state is not None else None
    if waiting is None or waiting.reason not in _NEVER_PULLS + _PULL_FAILURES:
        return None
    if waiting.reason in _PULL_FAILURES and now - _created(pod) < PULL_PATIENCE:
        return None
    image = next((c.image for c in pod.spec.containers if c.name == CONTAINER), "the image") if pod.spec else "?"
    return f"Kubernetes cannot pull the image {image}: {_words(waiting.reason, waiting.message)}"
