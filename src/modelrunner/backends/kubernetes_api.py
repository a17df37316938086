"""The ``kubernetes`` backend's link to a cluster: the official client, configured from a
kubeconfig or from the pod's service account, and what its errors say, in words a person can act
on (never a token or a kubeconfig's secret)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError, MaxRetryError, NewConnectionError

from modelrunner.errors import ModelrunnerError
from modelrunner.spec.kubernetes_spec import KubernetesBackendSpec

__all__ = ["ApiError", "ApiException", "KubernetesApi", "connect", "k8s", "problem"]

ApiError = (ApiException, HTTPError)
"""What a call to the API raises: ApiException when the server answered with an error, urllib3's
HTTPError when it could not be reached (or the answer did not arrive)."""

TIMEOUT = (5, 20)
"""Seconds to connect, and to wait for an answer, of a call to the API."""

_RETRIES = 1  # urllib3's retries of a connection that fails: twice the timeouts at most
_OBJECT_AT = re.compile(r"<[^>]* object at 0x[0-9a-f]+>:?\s*")


@dataclass(frozen=True)
class KubernetesApi:
    """The clients of one cluster's API, and its address as a person may see it."""

    client: Any  # kubernetes.client.ApiClient
    batch: Any  # BatchV1Api
    core: Any  # CoreV1Api
    server: str

    def close(self) -> None:
        self.client.close()


def connect(config: KubernetesBackendSpec) -> KubernetesApi:
    """Clients of the cluster's API: with ``kubeconfig`` and ``context`` when given; else with
    the pod's service account when running in the cluster, else with the default kubeconfig
    (``$KUBECONFIG`` or ``~/.kube/config``). Nothing is asked of the server here.
    ModelrunnerError saying what cannot be loaded."""
    configuration = k8s.Configuration()
    in_cluster = config.kubeconfig is None and config.context is None and "KUBERNETES_SERVICE_HOST" in os.environ
    where = "the pod's service account" if in_cluster else f"the kubeconfig {config.kubeconfig or '(default)'}"
    try:
        if in_cluster:
            k8s_config.load_incluster_config(client_configuration=configuration)
        else:
            k8s_config.load_kube_config(
                config_file=os.path.expanduser(config.kubeconfig) if config.kubeconfig else None,
                context=config.context,
                client_configuration=configuration,
                persist_config=False,  # never write refreshed tokens into a person's kubeconfig
            )
    except (k8s_config.ConfigException, OSError, ValueError, TypeError, KeyError) as exc:
        raise ModelrunnerError(f"cannot load the Kubernetes configuration from {where}: {exc}") from exc
    configuration.retries = _RETRIES
    api_client = k8s.ApiClient(configuration)
    return KubernetesApi(api_client, k8s.BatchV1Api(api_client), k8s.CoreV1Api(api_client), shown(configuration.host))


def shown(url: str) -> str:
    """The API server's URL without any user or password it may hold."""
    parts = urlsplit(url)
    if not parts.hostname:
        return url
    return urlunsplit(parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")))


def problem(exc: BaseException) -> str:
    """What went wrong with a call to the API: Kubernetes' own message when it answered, else
    why it could not be reached (never the request's headers, which hold the credentials)."""
    if isinstance(exc, ApiException):
        said = f"{exc.status} {exc.reason or ''}".strip()
        try:
            message = json.loads(exc.body or "").get("message")
        except (ValueError, AttributeError):
            message = None
        return f"{said}: {message}" if message else said
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    text = _OBJECT_AT.sub("", str(exc))
    if isinstance(exc, NewConnectionError):
        return "cannot connect: " + text.rsplit("Failed to establish a new connection: ", 1)[-1]
    return text or type(exc).__name__
