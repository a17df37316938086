"""``type: kubernetes`` in ``modelrunner.yaml``: the namespace and image of the attempts' Jobs, how
the server reaches the cluster's API, and where the Jobs of each resource class are scheduled.

Names are checked as Kubernetes checks them, so that a typo is reported by ``modelrunner check``
rather than by the API server at the first run."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def check_dns_label(value: str) -> str:
    """``value`` if Kubernetes takes it as a DNS-1123 label (a namespace); else ValueError."""
    if len(value) > 63 or not _DNS_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a DNS-1123 label: lowercase letters, digits and '-', at most 63, "
            "starting and ending with a letter or digit"
        )
    return value


def check_dns_subdomain(value: str) -> str:
    """``value`` if Kubernetes takes it as a DNS-1123 subdomain (names of service accounts,
    secrets, priority classes); else ValueError."""
    if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
        raise ValueError(
            f"{value!r} is not a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', at most 253, "
            "starting and ending with a letter or digit"
        )
    return value


def check_qualified_name(value: str) -> str:
    """``value`` if it is a label key or resource name (``[prefix/]name``); else ValueError."""
    prefix, _, name = value.rpartition("/")
    if prefix:
        try:
            check_dns_subdomain(prefix)
        except ValueError:
            raise ValueError(f"{value!r}: its prefix {prefix!r} is not a DNS-1123 subdomain") from None
    if len(name) > 63 or not _LABEL_NAME.match(name):
        raise ValueError(
            f"{value!r} is not a Kubernetes name like example.com/name: the name is letters, digits, "
            "'-', '_' and '.', at most 63, starting and ending with a letter or digit"
        )
    return value


def check_label_value(value: str) -> str:
    if value and (len(value) > 63 or not _LABEL_NAME.match(value)):
        raise ValueError(f"{value!r} is not a label value: letters, digits, '-', '_' and '.', at most 63")
    return value


def check_image(value: str | None) -> str | None:
    if value is not None and (not value.strip() or any(c.isspace() for c in value)):
        raise ValueError(f"{value!r} is not an image reference like registry.example.org/models:1.2")
    return value


def _check_node_selector(value: dict[str, str]) -> dict[str, str]:
    for key, label in value.items():
        check_qualified_name(key)
        check_label_value(label)
    return value


def _check_subdomain(value: str | None) -> str | None:
    return check_dns_subdomain(value) if value is not None else None


class KubernetesToleration(BaseModel):
    """One toleration of the attempts' pods, written as in a pod spec:
    ``{key: gpu, operator: Exists, effect: NoSchedule}``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    key: str | None = Field(default=None, description="The taint's key; none (with Exists) tolerates every taint")
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="The taint's effect; none tolerates every effect"
    )
    toleration_seconds: int | None = Field(
        default=None, alias="tolerationSeconds", description="With NoExecute: how long the pod stays once tainted"
    )

    @field_validator("key")
    @classmethod
    def _valid_key(cls, value: str | None) -> str | None:
        return check_qualified_name(value) if value is not None else None

    @field_validator("value")
    @classmethod
    def _valid_value(cls, value: str | None) -> str | None:
        return check_label_value(value) if value is not None else None

    @model_validator(mode="after")
    def _consistent(self) -> KubernetesToleration:
        if self.operator == "Exists" and self.value:
            raise ValueError("a toleration with operator Exists takes no value")
        if self.key is None and self.operator != "Exists":
            raise ValueError("a toleration without a key must have operator Exists")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("tolerationSeconds is only for effect NoExecute")
        return self


class KubernetesClassSpec(BaseModel):
    """Where the Jobs of one resource class run; what it leaves out comes from the backend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str | None = Field(
        default=None, description="Another image (with modelrunner installed), e.g. one with CUDA"
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels, over the backend's (the class's value wins for a key)"
    )
    tolerations: list[KubernetesToleration] = Field(
        default_factory=list, description="Tolerations, besides the backend's"
    )
    priority_class_name: str | None = Field(default=None, description="The pods' PriorityClass")
    service_account: str | None = Field(default=None, description="The pods' service account")

    _image = field_validator("image")(check_image)
    _selector = field_validator("node_selector")(_check_node_selector)
    _names = field_validator("priority_class_name", "service_account")(_check_subdomain)


class KubernetesPlacement(BaseModel):
    """Where and as what one attempt's pod runs: the backend's options, its class's over them."""

    model_config = ConfigDict(frozen=True)

    image: str
    node_selector: dict[str, str]
    tolerations: list[KubernetesToleration]
    priority_class_name: str | None
    service_account: str | None


class KubernetesBackendSpec(BaseModel):
    """``type: kubernetes``: each attempt is one Kubernetes Job (batch/v1) in ``namespace`` whose
    pod runs ``python -m modelrunner exec`` in ``image`` (which must have modelrunner installed).
    Needs ``pip install 'modelrunner[kubernetes]'`` on the server. The server reaches the API with
    ``kubeconfig`` and ``context`` when given; else with the pod's service account when it runs
    in the cluster, else with the default kubeconfig (``~/.kube/config`` or ``$KUBECONFIG``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["kubernetes"]
    image: str = Field(description="The image of the attempts: one with modelrunner installed")
    namespace: str = Field(default="default", description="The namespace of the Jobs")
    kubeconfig: str | None = Field(default=None, description="Path of a kubeconfig file")
    context: str | None = Field(default=None, description="A context of the kubeconfig; its current one without it")
    service_account: str | None = Field(default=None, description="The pods' service account (the namespace's default)")
    image_pull_secrets: list[str] = Field(default_factory=list, description="Secrets to pull the image with")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node labels the pods must run on")
    tolerations: list[KubernetesToleration] = Field(
        default_factory=list, description="Tolerations in Kubernetes' form: [{key, operator, value, effect}]"
    )
    priority_class_name: str | None = Field(default=None, description="The pods' PriorityClass")
    gpu_resource: str = Field(
        default="nvidia.com/gpu", description="The extended resource a model's `gpus` asks for (amd.com/gpu, ...)"
    )
    slots: int = Field(default=10, ge=1, description="How many Jobs are submitted or running at once")
    ttl_seconds_after_finished: int = Field(
        default=3600, ge=0, description="Kubernetes deletes an ended Job (and its pod) this long after it ended"
    )
    classes: dict[str, KubernetesClassSpec] = Field(
        default_factory=dict,
        description="Resource class (`resources.class`) -> {image, node_selector, tolerations, priority_class_name, "
        "service_account}",
    )

    _image = field_validator("image")(check_image)
    _selector = field_validator("node_selector")(_check_node_selector)
    _names = field_validator("priority_class_name", "service_account")(_check_subdomain)

    @field_validator("namespace")
    @classmethod
    def _valid_namespace(cls, value: str) -> str:
        return check_dns_label(value)

    @field_validator("image_pull_secrets")
    @classmethod
    def _valid_secrets(cls, value: list[str]) -> list[str]:
        for name in value:
            check_dns_subdomain(name)
        return value

    @field_validator("gpu_resource")
    @classmethod
    def _valid_resource(cls, value: str) -> str:
        check_qualified_name(value)
        if "/" not in value:
            raise ValueError(f"{value!r} is not an extended resource name like nvidia.com/gpu")
        return value

    @field_validator("kubeconfig", "context")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty (leave it out for the default)")
        return value

    def placement(self, resource_class: str | None) -> KubernetesPlacement:
        """Image and scheduling of runs of ``resource_class``: its class's options over the backend's."""
        chosen = self.classes.get(resource_class) if resource_class is not None else None
        chosen = chosen or KubernetesClassSpec()
        return KubernetesPlacement(
            image=chosen.image or self.image,
            node_selector={**self.node_selector, **chosen.node_selector},
            tolerations=[*self.tolerations, *(t for t in chosen.tolerations if t not in self.tolerations)],
            priority_class_name=chosen.priority_class_name or self.priority_class_name,
            service_account=chosen.service_account or self.service_account,
        )
