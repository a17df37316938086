"""What the ``aws-ecs`` and ``aws-batch`` backends share: boto3 clients, the job description as a
container override's environment, and AWS's errors in words. What every backend that launches
``modelrunner exec`` in a container shares is in exec_attempts.py."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as AwsConnectionError

from modelrunner.artifacts.store import ArtifactStore
from modelrunner.backends.base import BackendUnavailable
from modelrunner.backends.exec_attempts import exec_environment
from modelrunner.errors import ModelrunnerError
from modelrunner.execution.job import AttemptJob

AwsError = (BotoCoreError, ClientError)
"""What a call to AWS raises when it cannot be made or is refused."""

_BUSY_CODES = {"ThrottlingException", "TooManyRequestsException", "ServiceUnavailable", "ServerException"}


def client(service: str, region: str | None, endpoint_url: str | None) -> Any:
    """A boto3 client with credentials from boto3's usual chain. Calls give up within seconds
    (``health`` and the dispatcher's loop must not hang on an unreachable endpoint)."""
    config = Config(connect_timeout=5, read_timeout=20, retries={"max_attempts": 3, "mode": "standard"})
    return boto3.session.Session().client(service, region_name=region, endpoint_url=endpoint_url, config=config)


def job_environment(job: AttemptJob, artifacts: ArtifactStore, grace_seconds: float) -> list[dict[str, str]]:
    """The container override environment that makes ``modelrunner exec`` run ``job``."""
    return [{"name": name, "value": value} for name, value in exec_environment(job, artifacts, grace_seconds).items()]


def problem(exc: Exception) -> str:
    """What an AWS error says, for a person (never credentials: botocore's messages hold none)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', exc)}"
    return str(exc)


def refused(exc: Exception, what: str) -> ModelrunnerError:
    """The error of a submit AWS did not take: BackendUnavailable when AWS could not be reached
    or was too busy to answer (the run waits in the queue), else a plain refusal (it fails)."""
    message = f"{what}: {problem(exc)}"
    if isinstance(exc, AwsConnectionError | HTTPClientError):
        return BackendUnavailable(message)
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if exc.response.get("Error", {}).get("Code") in _BUSY_CODES or status >= 500:
            return BackendUnavailable(message)
    return ModelrunnerError(message)
