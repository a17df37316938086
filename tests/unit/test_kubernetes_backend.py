"""``type: kubernetes`` in modelrunner.yaml, the Job the backend sends for an attempt (as it goes
over the wire), and what the backend makes of Jobs and pods as the Kubernetes API returns them
(JSON shaped as in the API reference, read by the client as it reads an answer). No API server
is involved: nothing here makes a call."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from modelrunner.artifacts.logs import LogStore
from modelrunner.artifacts.store import ArtifactStore
from modelrunner.backends.base import Finished, Handle, RemoteServices, Report, Started
from modelrunner.backends.kubernetes import KubernetesBackend
from modelrunner.backends.kubernetes_api import problem, shown
from modelrunner.backends.kubernetes_jobs import job_manifest, kubernetes_memory, stop_patch
from modelrunner.engine.states import AttemptStatus
from modelrunner.errors import ModelrunnerError
from modelrunner.execution.job import AttemptJob, Outcome
from modelrunner.execution.remote import RemoteJob, outcome_key, outcome_to_dict, parse_job
from modelrunner.spec.kubernetes_spec import KubernetesBackendSpec, KubernetesClassSpec, KubernetesToleration
from modelrunner.spec.model_spec import Resources
from modelrunner.spec.workspace import Workspace, WorkspaceSpec

GRACE = 30
NOW = dt.datetime(2025, 3, 4, 10, 30, tzinfo=dt.UTC)
JOB_UID = "3f7e1c52-5b1a-4b1e-9a51-7d3c0e2f9a10"


def problems_of(tmp_path: Path, workspace: str) -> list[str]:
    (tmp_path / "modelrunner.yaml").write_text(f"name: ws\n{workspace}", encoding="utf-8")
    return [str(problem) for problem in Workspace(tmp_path).problems()]


# --- the spec ------------------------------------------------------------------------------------


def test_a_kubernetes_backend_with_its_options_and_their_defaults() -> None:
    spec = WorkspaceSpec.model_validate(
        {"backends": {"k8s": {"type": "kubernetes", "image": "registry.example.org/models:1.2"}}}
    )

    backend = spec.backends["k8s"]
    assert isinstance(backend, KubernetesBackendSpec)
    assert (backend.namespace, backend.kubeconfig, backend.context) == ("default", None, None)
    assert (backend.gpu_resource, backend.slots, backend.ttl_seconds_after_finished) == ("nvidia.com/gpu", 10, 3600)
    assert backend.node_selector == {} and backend.tolerations == [] and backend.classes == {}


def test_check_names_each_wrong_kubernetes_option(tmp_path: Path) -> None:
    found = problems_of(
        tmp_path,
        "backends:\n"
        "  k8s:\n"
        "    type: kubernetes\n"
        "    imag: models:1\n"
        "    namespace: Models_1\n"
        "    image_pull_secrets: [My_Secret]\n"
        "    gpu_resource: gpu\n"
        "    slots: 0\n"
        "    tolerations:\n"
        "      - {key: gpu, operator: Exists, value: 'yes'}\n"
        "      - {key: spot, effect: NoSchedule, tolerationSeconds: 60}\n"
        "      - {key: spot, efect: NoSchedule}\n"
        "    node_selector: {'bad key!': x}\n"
        "    classes:\n"
        "      gpu: {priorty_class_name: high, service_account: Runner}\n",
    )

    assert found == [
        "modelrunner.yaml: backends.k8s.image: is required",
        "modelrunner.yaml: backends.k8s.namespace: 'Models_1' is not a DNS-1123 label: lowercase letters, digits "
        "and '-', at most 63, starting and ending with a letter or digit",
        "modelrunner.yaml: backends.k8s.image_pull_secrets: 'My_Secret' is not a DNS-1123 subdomain: lowercase "
        "letters, digits, '-' and '.', at most 253, starting and ending with a letter or digit",
        "modelrunner.yaml: backends.k8s.node_selector: 'bad key!' is not a Kubernetes name like example.com/name: "
        "the name is letters, digits, '-', '_' and '.', at most 63, starting and ending with a letter or digit",
        "modelrunner.yaml: backends.k8s.tolerations.0: a toleration with operator Exists takes no value",
        "modelrunner.yaml: backends.k8s.tolerations.1: tolerationSeconds is only for effect NoExecute",
        "modelrunner.yaml: backends.k8s.tolerations.2.efect: is not a known field",
        "modelrunner.yaml: backends.k8s.gpu_resource: 'gpu' is not an extended resource name like nvidia.com/gpu",
        "modelrunner.yaml: backends.k8s.slots: Input should be greater than or equal to 1",
        "modelrunner.yaml: backends.k8s.classes.gpu.service_account: 'Runner' is not a DNS-1123 subdomain: "
        "lowercase letters, digits, '-' and '.', at most 253, starting and ending with a letter or digit",
        "modelrunner.yaml: backends.k8s.classes.gpu.priorty_class_name: is not a known field",
        "modelrunner.yaml: backends.k8s.imag: is not a known field",
    ]


def test_check_names_a_kubernetes_class_that_resource_classes_does_not_declare(tmp_path: Path) -> None:
    found = problems_of(
        tmp_path,
        "resource_classes: {gpu: {gpus: 1}}\n"
        "backends:\n"
        "  k8s: {type: kubernetes, image: 'models:1', classes: {gpu: {image: 'models:1-cuda'}, gpuu: {}}}\n",
    )

    assert found == [
        "modelrunner.yaml: backends.k8s.classes.gpuu: unknown resource class 'gpuu' (resource_classes: gpu)"
    ]


def test_modelrunner_check_reports_a_wrong_kubernetes_option_by_name(tmp_path: Path) -> None:
    (tmp_path / "modelrunner.yaml").write_text(
        "name: ws\nbackends:\n  k8s: {type: kubernetes, image: 'models:1', namespace: Models}\n", encoding="utf-8"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELRUNNER_")}

    checked = subprocess.run(
        [sys.executable, "-m", "modelrunner", "check", "--workspace", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )

    assert checked.returncode != 0
    assert "backends.k8s.namespace: 'Models' is not a DNS-1123 label" in checked.stdout + checked.stderr
    assert "Traceback" not in checked.stdout + checked.stderr


# --- the Job of an attempt ----------------------------------------------------------------------


def wire(obj: Any) -> Any:
    """``obj`` as the client sends it."""
    return ApiClient().sanitize_for_serialization(obj)


def attempt_job(resources: Resources) -> AttemptJob:
    return AttemptJob(
        run_id=7,
        attempt_id=42,
        attempt_number=2,
        model_name="seir",
        model_version="v3",
        command=["python", "model.py"],
        params={"r0": 2.5},
        snapshot_uri="s3://models/snapshots/seir-v3.tar.gz",
        declared_outputs=("projection.csv",),
        resources=resources,
        callback_url="https://modelrunner.example.org/api/v1/attempts/42",
        callback_token="mr_attempt_secret",
    )


def spec_of(**options: Any) -> KubernetesBackendSpec:
    return KubernetesBackendSpec.model_validate(
        {"type": "kubernetes", "image": "registry.example.org/models:1.2"} | options
    )


def manifest_of(job: AttemptJob, spec: KubernetesBackendSpec) -> dict[str, Any]:
    environment = {"MODELRUNNER_JOB": RemoteJob(job, "s3://models", GRACE).to_json()}
    sent: dict[str, Any] = wire(job_manifest(job, spec, environment, GRACE))
    return sent


def test_the_job_asks_for_the_models_resources_and_leaves_retries_and_timeouts_to_the_engine() -> None:
    job = attempt_job(Resources(cpu=2.5, memory="4Gi", gpus=1, timeout=3600))

    sent = manifest_of(job, spec_of(namespace="models", ttl_seconds_after_finished=600))

    labels = {
        "app.kubernetes.io/managed-by": "modelrunner",
        "modelrunner.io/attempt-id": "42",
        "modelrunner.io/run-id": "7",
        "modelrunner.io/attempt": "2",
    }
    assert (sent["apiVersion"], sent["kind"]) == ("batch/v1", "Job")
    assert sent["metadata"]["name"] == "modelrunner-attempt-42"
    assert sent["metadata"]["labels"] == labels
    assert sent["spec"]["backoffLimit"] == 0
    assert sent["spec"]["ttlSecondsAfterFinished"] == 600
    assert "activeDeadlineSeconds" not in sent["spec"]  # the Job's would count the wait for a node
    template = sent["spec"]["template"]
    assert template["metadata"]["labels"] == labels  # the pods are found by them too
    pod = template["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["terminationGracePeriodSeconds"] == GRACE
    assert pod["activeDeadlineSeconds"] == 3600 + GRACE + 300  # and an allowance to pull the image
    [container] = pod["containers"]
    assert container["name"] == "modelrunner"
    assert container["image"] == "registry.example.org/models:1.2"
    assert container["command"] == ["python", "-m", "modelrunner", "exec"]
    assert container["resources"] == {
        "requests": {"cpu": "2500m", "memory": "4Gi"},
        "limits": {"cpu": "2500m", "memory": "4Gi", "nvidia.com/gpu": "1"},
    }
    [env] = container["env"]
    assert env["name"] == "MODELRUNNER_JOB"
    remote = parse_job(env["value"])
    assert remote.job == job
    assert (remote.artifacts_url, remote.grace_seconds) == ("s3://models", GRACE)
    for absent in ("nodeSelector", "tolerations", "priorityClassName", "serviceAccountName", "imagePullSecrets"):
        assert absent not in pod


def test_without_resources_the_job_asks_for_one_cpu_and_sets_no_limit_or_deadline() -> None:
    sent = manifest_of(attempt_job(Resources()), spec_of())

    pod = sent["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "1"}}
    assert "activeDeadlineSeconds" not in pod


def test_the_resource_class_places_the_pod_over_the_backends_options() -> None:
    spec = spec_of(
        service_account="modelrunner-jobs",
        image_pull_secrets=["registry-login"],
        node_selector={"pool": "batch", "kubernetes.io/arch": "amd64"},
        tolerations=[{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
        gpu_resource="amd.com/gpu",
        classes={
            "gpu": {
                "image": "registry.example.org/models:1.2-rocm",
                "node_selector": {"pool": "gpu"},
                "tolerations": [
                    {
                        "key": "gpu",
                        "operator": "Equal",
                        "value": "mi300",
                        "effect": "NoExecute",
                        "tolerationSeconds": 60,
                    }
                ],
                "priority_class_name": "research-high",
            }
        },
    )
    job = attempt_job(Resources.model_validate({"class": "gpu", "cpu": 8, "memory": "64G", "gpus": 2}))

    pod = manifest_of(job, spec)["spec"]["template"]["spec"]

    assert pod["containers"][0]["image"] == "registry.example.org/models:1.2-rocm"
    assert pod["containers"][0]["resources"]["limits"] == {"cpu": "8", "memory": "64G", "amd.com/gpu": "2"}
    assert pod["nodeSelector"] == {"pool": "gpu", "kubernetes.io/arch": "amd64"}
    assert pod["tolerations"] == [
        {"key": "batch", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "gpu", "operator": "Equal", "value": "mi300", "effect": "NoExecute", "tolerationSeconds": 60},
    ]
    assert pod["priorityClassName"] == "research-high"
    assert pod["serviceAccountName"] == "modelrunner-jobs"
    assert pod["imagePullSecrets"] == [{"name": "registry-login"}]
    other = manifest_of(attempt_job(Resources()), spec)["spec"]["template"]["spec"]  # no class: the backend's
    assert other["containers"][0]["image"] == "registry.example.org/models:1.2"
    assert other["nodeSelector"] == {"pool": "batch", "kubernetes.io/arch": "amd64"}
    assert "priorityClassName" not in other


def test_a_class_spec_and_a_toleration_read_as_kubernetes_writes_them() -> None:
    toleration = KubernetesToleration.model_validate({"key": "spot", "effect": "NoExecute", "tolerationSeconds": 30})
    assert toleration.toleration_seconds == 30
    assert spec_of(classes={"big": {}}).classes == {"big": KubernetesClassSpec()}


@pytest.mark.parametrize(
    ("memory", "quantity"),
    [("512Mi", "512Mi"), ("4Gi", "4Gi"), ("1.5Gi", "1.5Gi"), ("2G", "2G"), ("1GiB", "1Gi"), ("100K", "100k")],
)
def test_memory_becomes_a_kubernetes_quantity(memory: str, quantity: str) -> None:
    assert kubernetes_memory(memory) == quantity


def test_memory_without_a_unit_is_refused_with_the_value() -> None:
    with pytest.raises(ModelrunnerError, match="memory '4096' is not an amount like 512Mi"):
        kubernetes_memory("4096")


def test_cancel_records_its_reason_as_a_json_patch_of_the_annotations() -> None:
    assert stop_patch(AttemptStatus.TIMED_OUT) == [
        {"op": "add", "path": "/metadata/annotations/modelrunner.io~1stop-reason", "value": "modelrunner: timed_out"}
    ]


# --- what Jobs and pods say -----------------------------------------------------------------------


def api_object(data: dict[str, Any], kind: str) -> Any:
    """``data`` as the client reads an answer of the API (into its models)."""
    text = json.dumps(data)
    try:
        return ApiClient().deserialize(text, kind, "application/json")  # client 36 and later
    except TypeError:
        return ApiClient().deserialize(SimpleNamespace(data=text), kind)  # earlier clients


def stamp(at: dt.datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(kind: str, reason: str, message: str, at: dt.datetime = NOW) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": stamp(at),
        "lastTransitionTime": stamp(at),
    }


def k8s_job(
    *,
    conditions: tuple[dict[str, Any], ...] = (),
    uid: str = JOB_UID,
    annotations: dict[str, str] | None = None,
    **status: Any,
) -> Any:
    return api_object(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": "modelrunner-attempt-42",
                "namespace": "models",
                "uid": uid,
                "creationTimestamp": stamp(NOW - dt.timedelta(minutes=10)),
                "labels": {"app.kubernetes.io/managed-by": "modelrunner", "modelrunner.io/attempt-id": "42"},
                "annotations": {"modelrunner.io/model": "seir@v3", **(annotations or {})},
            },
            "status": {"startTime": stamp(NOW - dt.timedelta(minutes=10)), **status, "conditions": list(conditions)},
        },
        "V1Job",
    )


def failed_job(*more: dict[str, Any]) -> Any:
    limit = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
    return k8s_job(conditions=(*more, condition("FailureTarget", *limit), condition("Failed", *limit)), failed=1)


def complete_job() -> Any:
    met = ("CompletionsReached", "Reached expected number of succeeded pods")
    return k8s_job(conditions=(condition("SuccessCriteriaMet", *met), condition("Complete", *met)), succeeded=1)


def running(started: dt.datetime) -> dict[str, Any]:
    return {"running": {"startedAt": stamp(started)}}


def exited(code: int, reason: str, started: dt.datetime, message: str | None = None) -> dict[str, Any]:
    ended = {"exitCode": code, "reason": reason, "startedAt": stamp(started), "finishedAt": stamp(NOW)}
    return {"terminated": ended | ({"message": message} if message else {})}


def waiting(reason: str, message: str) -> dict[str, Any]:
    return {"waiting": {"reason": reason, "message": message}}


def k8s_pod(
    state: dict[str, Any],
    phase: str,
    *,
    created: dt.datetime = NOW - dt.timedelta(minutes=10),
    conditions: tuple[dict[str, Any], ...] = (),
    **status: Any,
) -> Any:
    return api_object(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "modelrunner-attempt-42-x7k2p",
                "namespace": "models",
                "uid": "9b0c8d21-43f5-4a8e-8f6e-2c1d5e7a3b44",
                "creationTimestamp": stamp(created),
                "labels": {
                    "batch.kubernetes.io/job-name": "modelrunner-attempt-42",
                    "job-name": "modelrunner-attempt-42",
                },
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": "modelrunner-attempt-42",
                        "uid": JOB_UID,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {"containers": [{"name": "modelrunner", "image": "registry.example.org/models:1.2"}]},
            "status": {
                "phase": phase,
                "conditions": list(conditions),
                "startTime": stamp(created),
                "containerStatuses": [
                    {
                        "name": "modelrunner",
                        "image": "registry.example.org/models:1.2",
                        "imageID": "",
                        "ready": "running" in state,
                        "restartCount": 0,
                        "started": "running" in state,
                        "state": state,
                    }
                ],
                **status,
            },
        },
        "V1Pod",
    )


HANDLE: Handle = {
    "backend": "kubernetes",
    "namespace": "models",
    "job_name": "modelrunner-attempt-42",
    "job_uid": JOB_UID,
    "attempt_id": 42,
    "run_id": 7,
    "attempt": 2,
}
STARTED = NOW - dt.timedelta(minutes=8)


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(str(tmp_path / "artifacts"))


@pytest.fixture
def backend(tmp_path: Path, store: ArtifactStore) -> KubernetesBackend:
    """A backend whose configuration is never loaded: reading statuses makes no call."""
    spec = spec_of(namespace="models", kubeconfig=str(tmp_path / "never-read"))
    return KubernetesBackend("k8s", spec, RemoteServices(store, LogStore(tmp_path / "logs"), GRACE, lambda: None))


def left_outcome(store: ArtifactStore, outcome: Outcome) -> None:
    """What ``modelrunner exec`` leaves in the store when the model ends."""
    store.put_bytes(outcome_key(7, 2), json.dumps(outcome_to_dict(outcome)).encode())


def ended(reports: list[Report]) -> Outcome:
    assert isinstance(reports[-1], Finished), reports
    return reports[-1].outcome


def test_a_job_whose_pod_waits_for_a_node_or_its_image_reports_nothing(backend: KubernetesBackend) -> None:
    unschedulable = condition(
        "PodScheduled", "Unschedulable", "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    )
    unscheduled = api_object(
        {
            "metadata": {"name": "modelrunner-attempt-42-x7k2p", "uid": "u", "ownerReferences": []},
            "status": {"phase": "Pending", "conditions": [unschedulable | {"status": "False"}]},
        },
        "V1Pod",
    )
    pulling = k8s_pod(waiting("ContainerCreating", ""), "Pending")

    assert backend.reports_of(HANDLE, k8s_job(active=1), [], NOW) == []
    assert backend.reports_of(HANDLE, k8s_job(active=1), [unscheduled], NOW) == []
    assert backend.reports_of(HANDLE, k8s_job(active=1, ready=0), [pulling], NOW) == []


def test_a_running_container_starts_the_attempt_once(backend: KubernetesBackend) -> None:
    pod = k8s_pod(running(STARTED), "Running")

    [started] = backend.reports_of(HANDLE, k8s_job(active=1, ready=1), [pod], NOW)

    assert started == Started(42, HANDLE, STARTED)
    assert backend.reports_of(HANDLE, k8s_job(active=1, ready=1), [pod], NOW) == []


def test_a_complete_job_ends_as_the_outcome_the_model_left(backend: KubernetesBackend, store: ArtifactStore) -> None:
    left_outcome(store, Outcome(AttemptStatus.SUCCEEDED, exit_code=0))

    reports = backend.reports_of(HANDLE, complete_job(), [k8s_pod(exited(0, "Completed", STARTED), "Succeeded")], NOW)

    assert reports[0] == Started(42, HANDLE, STARTED)
    assert ended(reports) == Outcome(AttemptStatus.SUCCEEDED, exit_code=0)


def test_what_the_model_left_comes_before_what_kubernetes_says(
    backend: KubernetesBackend, store: ArtifactStore
) -> None:
    left_outcome(store, Outcome(AttemptStatus.FAILED, exit_code=3, error="the model exited with status 3"))
    evicted = condition("DisruptionTarget", "EvictionByEvictionAPI", "Eviction API: evicting")
    pod = k8s_pod(exited(0, "Completed", STARTED), "Succeeded", conditions=(evicted,))

    assert ended(backend.reports_of(HANDLE, complete_job(), [pod], NOW)).status == AttemptStatus.FAILED


def test_a_container_that_exits_without_an_outcome_fails_with_a_hint(backend: KubernetesBackend) -> None:
    pod = k8s_pod(exited(1, "Error", STARTED), "Failed")

    outcome = ended(backend.reports_of(HANDLE, failed_job(), [pod], NOW))

    assert (outcome.status, outcome.exit_code) == (AttemptStatus.FAILED, 1)
    assert "does the image have modelrunner installed, and reach the artifact store?" in str(outcome.error)
    assert "BackoffLimitExceeded" in str(outcome.error) and "container: Error (exit status 1)" in str(outcome.error)


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("PreemptionByScheduler", "Preempted by pod 5d1f... on node gpu-node-3"),
        ("EvictionByEvictionAPI", "Eviction API: evicting"),
        ("DeletionByTaintManager", "Taint manager: deleting due to NoExecute taint"),
        ("TerminationByKubelet", "Pod was terminated in response to imminent node shutdown."),
        ("DeletionByPodGC", "PodGC: node no longer exists"),
    ],
)
def test_a_pod_kubernetes_took_back_is_preempted_with_its_words(
    backend: KubernetesBackend, reason: str, message: str
) -> None:
    disrupted = condition("DisruptionTarget", reason, message)
    pod = k8s_pod(exited(143, "Error", STARTED), "Failed", conditions=(disrupted,))

    outcome = ended(backend.reports_of(HANDLE, failed_job(), [pod], NOW))

    assert outcome.status == AttemptStatus.PREEMPTED
    assert outcome.error == f"Kubernetes took the pod back: {reason}: {message}"


def test_a_pod_evicted_by_the_kubelet_is_preempted(backend: KubernetesBackend) -> None:
    message = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 91Mi."
    pod = k8s_pod(exited(137, "ContainerStatusUnknown", STARTED), "Failed", reason="Evicted", message=message)

    outcome = ended(backend.reports_of(HANDLE, failed_job(), [pod], NOW))

    assert (outcome.status, outcome.error) == (
        AttemptStatus.PREEMPTED,
        f"Kubernetes took the pod back: Evicted: {message}",
    )


def test_an_eviction_seen_while_the_pod_stopped_counts_once_the_pod_is_gone(backend: KubernetesBackend) -> None:
    evicted = condition("DisruptionTarget", "EvictionByEvictionAPI", "Eviction API: evicting")
    stopping = k8s_pod(running(STARTED), "Running", conditions=(evicted,))

    assert backend.reports_of(HANDLE, k8s_job(active=0, terminating=1), [stopping], NOW) == [
        Started(42, HANDLE, STARTED)
    ]
    # The Job controller lets the pod go as it counts it failed: the Job ends without it.
    outcome = ended(backend.reports_of(HANDLE, failed_job(), [], NOW))
    assert outcome.status == AttemptStatus.PREEMPTED
    assert "EvictionByEvictionAPI" in str(outcome.error)


def test_a_pod_past_its_deadline_timed_out(backend: KubernetesBackend) -> None:
    past = "Pod was active on the node longer than the specified deadline"
    pod = k8s_pod(exited(143, "Error", STARTED), "Failed", reason="DeadlineExceeded", message=past)

    outcome = ended(backend.reports_of(HANDLE, failed_job(), [pod], NOW))

    assert outcome == Outcome(AttemptStatus.TIMED_OUT, error="the run timed out")


def test_a_job_past_its_own_deadline_timed_out(backend: KubernetesBackend) -> None:
    past = ("DeadlineExceeded", "Job was active longer than specified deadline")
    job = k8s_job(conditions=(condition("FailureTarget", *past), condition("Failed", *past)), failed=1)

    assert ended(backend.reports_of(HANDLE, job, [], NOW)).status == AttemptStatus.TIMED_OUT


def test_an_image_that_cannot_be_pulled_fails_the_attempt_after_a_while(backend: KubernetesBackend) -> None:
    message = 'Back-off pulling image "registry.example.org/models:1.2"'
    just_created = k8s_pod(waiting("ImagePullBackOff", message), "Pending", created=NOW - dt.timedelta(seconds=20))
    for_minutes = k8s_pod(waiting("ImagePullBackOff", message), "Pending", created=NOW - dt.timedelta(minutes=3))

    assert backend.reports_of(HANDLE, k8s_job(active=1), [just_created], NOW) == []  # kubelet tries again
    [finished] = backend.reports_of(HANDLE, k8s_job(active=1), [for_minutes], NOW)

    assert finished == Finished(
        42,
        Outcome(
            AttemptStatus.FAILED,
            error="Kubernetes cannot pull the image registry.example.org/models:1.2: ImagePullBackOff: " + message,
        ),
    )


def test_an_invalid_image_name_fails_the_attempt_at_once(backend: KubernetesBackend) -> None:
    message = 'Failed to apply default image tag "Models:1": couldn\'t parse image name "Models:1"'
    pod = k8s_pod(waiting("InvalidImageName", message), "Pending", created=NOW - dt.timedelta(seconds=5))

    outcome = ended(backend.reports_of(HANDLE, k8s_job(active=1), [pod], NOW))

    assert outcome.status == AttemptStatus.FAILED and "InvalidImageName" in str(outcome.error)


def test_a_job_modelrunner_stopped_ends_as_it_asked_also_read_back_by_another_server(
    backend: KubernetesBackend,
) -> None:
    job = k8s_job(annotations={"modelrunner.io/stop-reason": "modelrunner: cancelled"}, terminating=1)
    pod = k8s_pod(exited(0, "Completed", STARTED), "Succeeded")

    assert backend.reports_of(HANDLE, job, [pod], NOW) == [Started(42, HANDLE, STARTED)]  # not ended yet
    annotated = complete_job()
    annotated.metadata.annotations = {"modelrunner.io/stop-reason": "modelrunner: cancelled"}
    assert ended(backend.reports_of(HANDLE, annotated, [pod], NOW)) == Outcome(
        AttemptStatus.CANCELLED, error="the run was cancelled"
    )


def test_a_job_gone_without_modelrunner_deleting_it_is_lost(backend: KubernetesBackend) -> None:
    outcome = ended(backend.reports_of(HANDLE, None, [], NOW))

    assert outcome.status == AttemptStatus.LOST
    assert "the Job modelrunner-attempt-42 is gone (deleted outside modelrunner?)" in str(outcome.error)


def test_another_job_of_the_same_name_is_not_the_attempts(backend: KubernetesBackend) -> None:
    other = k8s_job(uid="0d9a3b7e-1111-4c2d-8e9f-000000000000", active=1, ready=1)

    assert ended(backend.reports_of(HANDLE, other, [], NOW)).status == AttemptStatus.LOST


def test_a_job_that_completed_without_an_outcome_is_lost(backend: KubernetesBackend) -> None:
    outcome = ended(
        backend.reports_of(HANDLE, complete_job(), [k8s_pod(exited(0, "Completed", STARTED), "Succeeded")], NOW)
    )

    assert outcome.status == AttemptStatus.LOST
    assert "the Kubernetes Job ended without an outcome: Job complete: CompletionsReached" in str(outcome.error)


# --- the API's errors in words ----------------------------------------------------------------------


def test_an_api_refusal_reads_as_kubernetes_message_and_an_address_without_credentials() -> None:
    refused = ApiException(status=403, reason="Forbidden")
    refused.body = json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": 'jobs.batch is forbidden: User "system:serviceaccount:models:runner" cannot create resource '
            '"jobs" in API group "batch" in the namespace "models"',
            "reason": "Forbidden",
            "details": {"group": "batch", "kind": "jobs"},
            "code": 403,
        }
    )

    assert problem(refused) == (
        '403 Forbidden: jobs.batch is forbidden: User "system:serviceaccount:models:runner" cannot create '
        'resource "jobs" in API group "batch" in the namespace "models"'
    )
    assert shown("https://admin:s3cret@k8s.example.org:6443") == "https://k8s.example.org:6443"
    assert shown("https://10.0.0.1") == "https://10.0.0.1"
