"""The ``aws-ecs`` backend: each attempt is one ECS task on Fargate or Fargate Spot.

How the engine's words map to ECS:

- submit: RunTask with the capacity provider FARGATE or FARGATE_SPOT (FARGATE for an attempt
  after which no retry would follow an interruption, with ``on_demand_last_attempt``) and a
  container override running ``python -m modelrunner exec`` with ``MODELRUNNER_JOB``; the
  task's ``startedBy`` names the attempt. A task ECS cannot place (``failures``, such as no
  Spot capacity) ends the attempt as lost, to be retried;
- started: the task's ``lastStatus`` is RUNNING;
- ended: the task is STOPPED. The outcome ``modelrunner exec`` left in the artifact store says
  how, when the model ended by itself. Otherwise: stopped by modelrunner (its own reason) ->
  cancelled or timed out; ``stopCode`` SpotInterruption (or a reason saying so) -> preempted;
  the container exited non-zero without an outcome -> failed (modelrunner exec could not run:
  an image without modelrunner, say; retrying would not help); anything else (stopped by a
  person, a task that could not start, a lost host) -> lost, retried on ``retries.lost``, with
  ECS's reason in the error;
- cancel: StopTask with the reason ``modelrunner: <status>``; a handle without the task's ARN
  (a server that died before the task ran) finds it by ``startedBy``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

from modelrunner.backends.aws import AwsError, client, job_environment, problem, refused
from modelrunner.backends.base import Handle, RemoteServices, Report
from modelrunner.backends.exec_attempts import EXEC_COMMAND, Attempts, attempt_name, stop_reason
from modelrunner.engine.states import AttemptStatus
from modelrunner.execution.job import AttemptJob, Outcome
from modelrunner.spec.backend_spec import AwsEcsBackendSpec

log = logging.getLogger("modelrunner.backends.aws_ecs")

_DESCRIBE_BATCH = 100  # DescribeTasks takes at most 100 tasks


def is_spot_interruption(task: dict[str, Any]) -> bool:
    """Whether ECS stopped the task because Fargate Spot took its capacity back."""
    reason = str(task.get("stoppedReason", "")).lower()
    return task.get("stopCode") == "SpotInterruption" or ("spot" in reason and "interrupt" in reason)


class AwsEcsBackend:
    """Runs attempts as ECS tasks of ``config``; see the module's docstring."""

    type: ClassVar[str] = "aws-ecs"

    def __init__(
        self,
        name: str,
        config: AwsEcsBackendSpec,
        services: RemoteServices,
    ) -> None:
        """``artifacts`` must be reachable from the tasks under the same URL (an ``s3://`` URL)."""
        self.name = name
        self._config = config
        self._artifacts = services.artifacts
        self._grace = services.grace_seconds
        self._wake = services.wake
        self._ecs = client("ecs", config.region, config.endpoint_url)
        self._attempts = Attempts(services.artifacts, services.logs)

    # --- the backend contract -------------------------------------------------------------------

    def free_slots(self) -> int:
        return self._config.slots - self._attempts.count()

    def health(self) -> str | None:
        try:
            found = self._ecs.describe_clusters(clusters=[self._config.cluster])
        except AwsError as exc:
            return f"cannot reach ECS: {problem(exc)}"
        clusters = [c for c in found.get("clusters", []) if c.get("status") == "ACTIVE"]
        if not clusters:
            return f"the ECS cluster {self._config.cluster} does not exist or is not active"
        return None

    def submit(self, job: AttemptJob) -> Handle:
        capacity = self._config.capacity
        if capacity == "FARGATE_SPOT" and job.last_attempt and self._config.on_demand_last_attempt:
            capacity = "FARGATE"  # an interruption now would fail the run: pay for capacity that stays
        network: dict[str, Any] = {
            "subnets": self._config.subnets,
            "securityGroups": self._config.security_groups,  # none: the VPC's default group
            "assignPublicIp": "ENABLED" if self._config.assign_public_ip else "DISABLED",
        }
        container = {
            "name": self._config.container,
            "command": EXEC_COMMAND,
            "environment": job_environment(job, self._artifacts, self._grace),
        }
        try:
            answer = self._ecs.run_task(
                cluster=self._config.cluster,
                taskDefinition=self._config.task_definition,
                capacityProviderStrategy=[{"capacityProvider": capacity, "weight": 1}],
                networkConfiguration={"awsvpcConfiguration": network},
                overrides={"containerOverrides": [container]},
                startedBy=attempt_name(job.attempt_id),
                count=1,
            )
        except AwsError as exc:
            raise refused(exc, "ECS did not run the task") from exc
        handle: Handle = {
            "backend": self.type,
            "cluster": self._config.cluster,
            "capacity": capacity,
            "attempt_id": job.attempt_id,
            "run_id": job.run_id,
            "attempt": job.attempt_number,
        }
        tasks = answer.get("tasks", [])
        if tasks:
            handle["task_arn"] = tasks[0]["taskArn"]
        else:  # not placed: the next poll ends the attempt as lost (retried)
            failures = "; ".join(f"{f.get('reason')} {f.get('detail') or ''}".strip() for f in answer["failures"])
            handle["not_placed"] = failures or "no task and no reason"
        self._attempts.add(job.attempt_id)
        self._wake()
        return handle

    def poll(self, handles: Sequence[Handle]) -> list[Report]:
        reports: list[Report] = []
        placed = [h for h in handles if h.get("task_arn")]
        for handle in handles:
            if "not_placed" in handle:
                error = f"ECS could not place the task on {handle['capacity']}: {handle['not_placed']}"
                reports.append(self._attempts.finish(handle, Outcome(AttemptStatus.LOST, error=error)))
        for start in range(0, len(placed), _DESCRIBE_BATCH):
            chunk = placed[start : start + _DESCRIBE_BATCH]
            try:
                found = self._ecs.describe_tasks(cluster=self._config.cluster, tasks=[h["task_arn"] for h in chunk])
            except AwsError as exc:  # asked again at the next poll
                log.warning("backend %s: cannot describe its ECS tasks: %s", self.name, problem(exc))
                continue
            tasks = {task["taskArn"]: task for task in found.get("tasks", [])}
            for handle in chunk:
                task = tasks.get(handle["task_arn"])
                if task is None:
                    error = "ECS no longer knows the task (stopped tasks are forgotten after about an hour)"
                    reports.append(self._attempts.finish(handle, Outcome(AttemptStatus.LOST, error=error)))
                    continue
                reports.extend(self._reports_of(handle, task))
        return reports

    def cancel(self, handle: Handle, reason: AttemptStatus) -> None:
        attempt_id = int(handle["attempt_id"])
        self._attempts.stopping(attempt_id, reason)
        cluster = str(handle.get("cluster", self._config.cluster))
        try:
            arns = [handle["task_arn"]] if handle.get("task_arn") else self._tasks_of(cluster, attempt_id)
            for arn in arns:
                self._ecs.stop_task(cluster=cluster, task=arn, reason=stop_reason(reason))
        except AwsError as exc:
            # The engine retries a cancel it still wants; a task stopped already is no error here.
            log.warning("attempt %s: ECS did not stop its task: %s", attempt_id, problem(exc))
        self._wake()

    def close(self) -> None:
        """Close the connections to AWS. Attempts still running are not stopped here: the
        dispatcher stops them (cancel) as the server shuts down."""
        self._ecs.close()

    # --- helpers --------------------------------------------------------------------------------

    def _tasks_of(self, cluster: str, attempt_id: int) -> list[str]:
        """The ARNs of the attempt's tasks still running (found by ``startedBy``)."""
        found = self._ecs.list_tasks(cluster=cluster, startedBy=attempt_name(attempt_id), desiredStatus="RUNNING")
        return [str(arn) for arn in found.get("taskArns", [])]

    def _reports_of(self, handle: Handle, task: dict[str, Any]) -> list[Report]:
        ending = None
        if task.get("lastStatus") == "STOPPED":
            exits = [c.get("exitCode") for c in task.get("containers", []) if c.get("name") == self._config.container]
            reason = task.get("stoppedReason") or task.get("stopCode")
            spot = f"Fargate Spot interrupted the task: {reason}" if is_spot_interruption(task) else None
            ending = self._attempts.ending(
                handle, reason, exits[0] if exits else None, interrupted=spot, what="ECS task"
            )
        running = task.get("lastStatus") == "RUNNING"
        return self._attempts.reports(handle, running=running, at=task.get("startedAt"), ending=ending)
