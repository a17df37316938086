"""The ``aws-batch`` backend: each attempt is one AWS Batch job.

How the engine's words map to Batch:

- submit: SubmitJob to the job queue and job definition of the run's resource class
  (``classes``; the default pair otherwise), named after the attempt, with a container override
  running ``python -m modelrunner exec`` with ``MODELRUNNER_JOB``, the model's ``cpu``,
  ``memory`` and ``gpus`` as resource requirements when it gives them, and one attempt only:
  retries are the engine's, never Batch's behind its back;
- started: the job is RUNNING;
- ended: SUCCEEDED or FAILED. The outcome ``modelrunner exec`` left in the artifact store says
  how, when the model ended by itself. Otherwise: terminated by modelrunner (its own reason) ->
  cancelled or timed out; "Host EC2 ... terminated" (a Spot instance taken back) -> preempted;
  the container exited non-zero without an outcome -> failed; anything else -> lost, retried on
  ``retries.lost``, with Batch's reason in the error;
- cancel: TerminateJob with the reason ``modelrunner: <status>`` (it also removes a job that
  has not started); a handle without the job id finds the job by its name.

Fan-outs are not turned into array jobs: the engine gives every item its own run, attempts and
retries, and hands the backend one attempt at a time.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from typing import Any, ClassVar

from modelrunner.backends.aws import AwsError, client, job_environment, problem, refused
from modelrunner.backends.base import Handle, RemoteServices, Report
from modelrunner.backends.exec_attempts import EXEC_COMMAND, Attempts, attempt_name, stop_reason
from modelrunner.engine.states import AttemptStatus
from modelrunner.errors import ModelrunnerError
from modelrunner.execution.job import AttemptJob, Outcome
from modelrunner.spec.backend_spec import AwsBatchBackendSpec
from modelrunner.spec.model_spec import Resources

log = logging.getLogger("modelrunner.backends.aws_batch")

_DESCRIBE_BATCH = 100  # DescribeJobs takes at most 100 jobs
_ENDED = ("SUCCEEDED", "FAILED")
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T)?\s*$")
_MEBIBYTES = {None: 2**-20, "Ki": 2**-10, "Mi": 1, "Gi": 2**10, "Ti": 2**20, "K": 1e3 / 2**20, "M": 1e6 / 2**20}
_MEBIBYTES |= {"G": 1e9 / 2**20, "T": 1e12 / 2**20}


def mebibytes(memory: str) -> int:
    """``512Mi``, ``8Gi``, ``2G`` (or bytes) in MiB, rounded up, as Batch's MEMORY wants it."""
    match = _MEMORY.match(memory)
    if match is None:
        raise ModelrunnerError(f"memory {memory!r} is not a size like 512Mi or 8Gi")
    return max(1, math.ceil(float(match.group(1)) * _MEBIBYTES[match.group(2)]))


def resource_requirements(resources: Resources) -> list[dict[str, str]]:
    """What the model asks for, in Batch's terms; the job definition's values for the rest."""
    wanted = []
    if resources.cpu is not None:
        wanted.append({"type": "VCPU", "value": f"{resources.cpu:g}"})
    if resources.memory is not None:
        wanted.append({"type": "MEMORY", "value": str(mebibytes(resources.memory))})
    if resources.gpus:
        wanted.append({"type": "GPU", "value": str(resources.gpus)})
    return wanted


def is_host_reclaimed(reason: str) -> bool:
    """Whether Batch says the instance under the job went away (how a Spot reclaim shows)."""
    return reason.startswith("Host EC2") and "terminated" in reason


class AwsBatchBackend:
    """Runs attempts as AWS Batch jobs of ``config``; see the module's docstring."""

    type: ClassVar[str] = "aws-batch"

    def __init__(
        self,
        name: str,
        config: AwsBatchBackendSpec,
        services: RemoteServices,
    ) -> None:
        """``artifacts`` must be reachable from the jobs under the same URL (an ``s3://`` URL)."""
        self.name = name
        self._config = config
        self._artifacts = services.artifacts
        self._grace = services.grace_seconds
        self._wake = services.wake
        self._batch = client("batch", config.region, config.endpoint_url)
        self._attempts = Attempts(services.artifacts, services.logs)

    # --- the backend contract -------------------------------------------------------------------

    def free_slots(self) -> int:
        return self._config.slots - self._attempts.count()

    def health(self) -> str | None:
        queues = self._queues()
        try:
            found = self._batch.describe_job_queues(jobQueues=queues)
        except AwsError as exc:
            return f"cannot reach AWS Batch: {problem(exc)}"
        usable = {q["jobQueueName"] for q in found.get("jobQueues", []) if q.get("state") == "ENABLED"}
        usable |= {q["jobQueueArn"] for q in found.get("jobQueues", []) if q.get("state") == "ENABLED"}
        missing = [queue for queue in queues if queue not in usable]
        if missing:
            return f"AWS Batch job queue(s) {', '.join(missing)} do not exist or are not enabled"
        return None

    def submit(self, job: AttemptJob) -> Handle:
        target = self._config.target(job.resources.resource_class)
        overrides: dict[str, Any] = {
            "command": EXEC_COMMAND,
            "environment": job_environment(job, self._artifacts, self._grace),
        }
        if wanted := resource_requirements(job.resources):
            overrides["resourceRequirements"] = wanted
        try:
            answer = self._batch.submit_job(
                jobName=attempt_name(job.attempt_id),
                jobQueue=target.job_queue,
                jobDefinition=target.job_definition,
                containerOverrides=overrides,
                retryStrategy={"attempts": 1},
            )
        except AwsError as exc:
            raise refused(exc, "AWS Batch did not take the job") from exc
        self._attempts.add(job.attempt_id)
        self._wake()
        return {
            "backend": self.type,
            "job_id": answer["jobId"],
            "job_queue": target.job_queue,
            "job_definition": target.job_definition,
            "attempt_id": job.attempt_id,
            "run_id": job.run_id,
            "attempt": job.attempt_number,
        }

    def poll(self, handles: Sequence[Handle]) -> list[Report]:
        reports: list[Report] = []
        submitted = [h for h in handles if h.get("job_id")]
        for start in range(0, len(submitted), _DESCRIBE_BATCH):
            chunk = submitted[start : start + _DESCRIBE_BATCH]
            try:
                found = self._batch.describe_jobs(jobs=[h["job_id"] for h in chunk])
            except AwsError as exc:  # asked again at the next poll
                log.warning("backend %s: cannot describe its Batch jobs: %s", self.name, problem(exc))
                continue
            jobs = {job["jobId"]: job for job in found.get("jobs", [])}
            for handle in chunk:
                described = jobs.get(handle["job_id"])
                if described is None:
                    error = "AWS Batch no longer knows the job (ended jobs are forgotten after a day or so)"
                    reports.append(self._attempts.finish(handle, Outcome(AttemptStatus.LOST, error=error)))
                    continue
                reports.extend(self._reports_of(handle, described))
        return reports

    def cancel(self, handle: Handle, reason: AttemptStatus) -> None:
        attempt_id = int(handle["attempt_id"])
        self._attempts.stopping(attempt_id, reason)
        try:
            job_ids = [handle["job_id"]] if handle.get("job_id") else self._jobs_of(attempt_id)
            for job_id in job_ids:
                self._batch.terminate_job(jobId=job_id, reason=stop_reason(reason))
        except AwsError as exc:  # the engine retries a cancel it still wants
            log.warning("attempt %s: AWS Batch did not terminate its job: %s", attempt_id, problem(exc))
        self._wake()

    def close(self) -> None:
        """Close the connections to AWS. Attempts still running are not stopped here: the
        dispatcher stops them (cancel) as the server shuts down."""
        self._batch.close()

    # --- helpers --------------------------------------------------------------------------------

    def _queues(self) -> list[str]:
        return list(dict.fromkeys([self._config.job_queue, *(t.job_queue for t in self._config.classes.values())]))

    def _jobs_of(self, attempt_id: int) -> list[str]:
        """The ids of the attempt's jobs that have not ended, in any of the backend's queues."""
        name = {"name": "JOB_NAME", "values": [attempt_name(attempt_id)]}
        ids = []
        for queue in self._queues():
            for page in self._batch.get_paginator("list_jobs").paginate(jobQueue=queue, filters=[name]):
                ids += [j["jobId"] for j in page.get("jobSummaryList", []) if j.get("status") not in _ENDED]
        return ids

    def _reports_of(self, handle: Handle, described: dict[str, Any]) -> list[Report]:
        ending = None
        if described.get("status") in _ENDED:
            reason = described.get("statusReason")
            lost_host = f"AWS Batch lost the job's instance: {reason}" if is_host_reclaimed(reason or "") else None
            code = (described.get("container") or {}).get("exitCode")
            ending = self._attempts.ending(handle, reason, code, interrupted=lost_host, what="Batch job")
        running = described.get("status") == "RUNNING"
        return self._attempts.reports(handle, running=running, at=None, ending=ending)
