"""The ``kubernetes`` backend: each attempt is one Kubernetes Job (batch/v1) in the backend's
namespace.

How the engine's words map to Kubernetes:

- submit: create the Job named after the attempt, labelled ``app.kubernetes.io/managed-by:
  modelrunner`` with the attempt's and run's ids, whose one pod runs ``python -m modelrunner
  exec`` with ``MODELRUNNER_JOB`` in the backend's (or the resource class's) image. The model's
  ``cpu``, ``memory`` and ``gpus`` become requests and limits; its timeout (with the grace period
  and an allowance for pulling the image) the pod's ``activeDeadlineSeconds``, so that a pod
  whose server is gone still stops; ``backoffLimit: 0`` and ``restartPolicy: Never``: retries are
  the engine's, never Kubernetes' behind its back. Kubernetes deletes an ended Job after
  ``ttl_seconds_after_finished``;
- started: the container runs (or the Job ended having run);
- ended: the Job is Complete or Failed, or the attempt cannot start. The outcome ``modelrunner
  exec`` left in the artifact store says how, when the model ended by itself. Otherwise: deleted by
  modelrunner (its reason, also in the Job's ``modelrunner.io/stop-reason`` annotation) ->
  cancelled or timed out; the pod's deadline passed -> timed out; the pod evicted, preempted, or
  its node gone (the pod's DisruptionTarget condition, or a reason such as Evicted) -> preempted;
  an image that cannot be pulled -> failed (the Job is deleted); the container exited non-zero
  without an outcome -> failed; a Job gone without modelrunner deleting it, or anything else ->
  lost, retried on ``retries.lost``, with Kubernetes' words in the error;
- cancel: annotate the Job with the reason, then delete it with propagation Background: its pod
  gets SIGTERM, and SIGKILL after the grace period. The Job is found by its labels, so a handle
  written by a process that no longer exists is enough.

While the API server cannot be reached (or its configuration loaded) the backend takes no work
(``free_slots`` is 0, and a submit that finds it so raises BackendUnavailable): runs wait in the
queue, ``health`` says why, and the server is asked again every few seconds. A Job refused by the
API (an invalid or forbidden one) fails its attempt with Kubernetes' message.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from modelrunner.backends.base import BackendUnavailable, Finished, Handle, RemoteServices, Report
from modelrunner.backends.exec_attempts import Attempts, attempt_name, exec_environment
from modelrunner.backends.kubernetes_api import TIMEOUT, ApiError, ApiException, KubernetesApi, connect, problem
from modelrunner.backends.kubernetes_jobs import (
    ATTEMPT_LABEL,
    NUMBER_LABEL,
    RUN_LABEL,
    job_ended,
    job_manifest,
    read_job,
    selector,
    stop_patch,
)
from modelrunner.clock import utcnow
from modelrunner.engine.states import AttemptStatus
from modelrunner.errors import ModelrunnerError
from modelrunner.execution.job import AttemptJob, Outcome
from modelrunner.spec.kubernetes_spec import KubernetesBackendSpec

log = logging.getLogger("modelrunner.backends.kubernetes")

_HEALTH_TIMEOUT = (2, 3)  # health answers within a few seconds, also on an unreachable server
_PROBE_SECONDS = 5.0  # how often an API server that cannot be used is tried again
_SELECTOR_BATCH = 100  # attempts per label selector (its length stays far below URL limits)
_WHAT = "Kubernetes Job"


class KubernetesBackend:
    """Runs attempts as Kubernetes Jobs of ``config``; see the module's docstring."""

    type: ClassVar[str] = "kubernetes"

    def __init__(self, name: str, config: KubernetesBackendSpec, services: RemoteServices) -> None:
        """Jobs must reach ``services.artifacts`` under the same URL (an ``s3://`` URL, say).
        The cluster's configuration is loaded at the first call; until it loads and the API
        answers, ``health`` says why and the backend takes no work."""
        self.name = name
        self._config = config
        self._artifacts = services.artifacts
        self._grace = services.grace_seconds
        self._wake = services.wake
        self._attempts = Attempts(services.artifacts, services.logs)
        self._lock = threading.Lock()
        self._api_loaded: KubernetesApi | None = None
        self._usable: bool | None = None  # the API answered the last call; None: not asked yet
        self._next_probe = 0.0
        self._taken_back: dict[int, str] = {}  # seen while the pod existed, kept until its Job ends
        self._leftovers: set[tuple[str, str]] = set()  # (namespace, name) of Jobs still to delete

    # --- the backend contract -------------------------------------------------------------------

    def free_slots(self) -> int:
        if not self._usable:
            return 0  # runs wait in the queue until the API answers (poll asks it again)
        return self._config.slots - self._attempts.count()

    def health(self) -> str | None:
        namespace = self._config.namespace
        try:
            api = self._api()
        except ModelrunnerError as exc:
            return self._unusable(exc.message)
        # What every poll lists: a server that refuses either leaves attempts unobserved.
        for what, listing in (("Jobs", api.batch.list_namespaced_job), ("pods", api.core.list_namespaced_pod)):
            try:
                listing(namespace, limit=1, _request_timeout=_HEALTH_TIMEOUT)
            except ApiException as exc:
                return self._unusable(
                    f"the Kubernetes API server {api.server} refused to list {what} in namespace {namespace}: "
                    f"{problem(exc)}"
                )
            except ApiError as exc:
                return self._unusable(f"cannot reach the Kubernetes API server {api.server}: {problem(exc)}")
        self._usable = True
        return None

    def submit(self, job: AttemptJob) -> Handle:
        try:
            api = self._api()
        except ModelrunnerError as exc:
            raise BackendUnavailable(self._unusable(exc.message)) from exc
        namespace, name = self._config.namespace, attempt_name(job.attempt_id)
        manifest = job_manifest(job, self._config, exec_environment(job, self._artifacts, self._grace), self._grace)
        try:
            created = api.batch.create_namespaced_job(namespace, manifest, _request_timeout=TIMEOUT)
        except ApiException as exc:
            said = f"Kubernetes did not take the Job {name} in namespace {namespace}: {problem(exc)}"
            if exc.status == 409:
                created = self._same_job(api, namespace, name, job)  # a try whose answer was lost made it
            elif exc.status is None or exc.status >= 500 or exc.status == 429:  # down, or too busy: not refused
                if exc.status != 429:
                    self._leftovers.add((namespace, name))  # it may have been created all the same
                raise BackendUnavailable(self._unusable(said)) from exc
            else:
                raise ModelrunnerError(said) from exc
        except ApiError as exc:
            self._leftovers.add((namespace, name))  # an answer that did not arrive: it may have been created
            raise BackendUnavailable(
                self._unusable(f"cannot reach the Kubernetes API server {api.server}: {problem(exc)}")
            ) from exc
        self._attempts.add(job.attempt_id)
        self._wake()
        return {
            "backend": self.type,
            "namespace": namespace,
            "job_name": name,
            "job_uid": created.metadata.uid,
            "attempt_id": job.attempt_id,
            "run_id": job.run_id,
            "attempt": job.attempt_number,
        }

    def poll(self, handles: Sequence[Handle]) -> list[Report]:
        if not self._usable and (time.monotonic() < self._next_probe or self.health() is not None):
            return []  # an API server that cannot be used is asked again in a few seconds, not at every tick
        reports: list[Report] = []
        by_namespace: dict[str, list[Handle]] = {}
        for handle in handles:
            by_namespace.setdefault(str(handle.get("namespace") or self._config.namespace), []).append(handle)
        for namespace, group in by_namespace.items():
            for start in range(0, len(group), _SELECTOR_BATCH):
                reports += self._poll_some(namespace, group[start : start + _SELECTOR_BATCH])
        if self._usable and self._leftovers:
            self._delete_leftovers()
        return reports

    def cancel(self, handle: Handle, reason: AttemptStatus) -> None:
        attempt_id = int(handle["attempt_id"])
        self._attempts.stopping(attempt_id, reason)
        namespace = str(handle.get("namespace") or self._config.namespace)
        # Tried even while the server seems unreachable (a server shutting down has no later
        # poll), but then without making the dispatcher wait long on it.
        timeout = _HEALTH_TIMEOUT if self._usable is False else TIMEOUT
        try:
            api = self._api()
            names = [handle["job_name"]] if handle.get("job_name") else self._jobs_of(api, namespace, handle, timeout)
            for name in names:
                self._stop(api, namespace, str(name), reason, timeout)
        except (ModelrunnerError, *ApiError) as exc:
            # Deleted at a later poll: nothing may go on running (and billing) for an ended run.
            self._leftovers.add((namespace, str(handle.get("job_name") or attempt_name(attempt_id))))
            said = exc.message if isinstance(exc, ModelrunnerError) else problem(exc)
            log.warning("attempt %s: its Kubernetes Job is not deleted yet: %s", attempt_id, said)
        self._wake()

    def close(self) -> None:
        """Close the connections to the API server. Attempts still running are not stopped here:
        the dispatcher stops them (cancel) as the server shuts down."""
        with self._lock:
            if self._api_loaded is not None:
                self._api_loaded.close()

    # --- how an attempt's Job reads -------------------------------------------------------------

    def reports_of(self, handle: Handle, job: Any, pods: Sequence[Any], now: dt.datetime | None = None) -> list[Report]:
        """What to report about the attempt of ``handle``, given its Job (None: there is none)
        and the Job's pods as the API returned them, and what the attempt left in the artifact
        store (which comes first)."""
        attempt_id = int(handle["attempt_id"])
        if job is None or (handle.get("job_uid") and job.metadata.uid != handle["job_uid"]):
            gone = (
                f"the Job {handle.get('job_name') or attempt_name(attempt_id)} is gone (deleted outside modelrunner?)"
            )
            taken_back = self._taken_back.pop(attempt_id, None)
            return [
                self._attempts.finish(
                    handle, self._attempts.ending(handle, gone, None, interrupted=taken_back, what=_WHAT)
                )
            ]
        state = read_job(job, pods, now or utcnow())
        if state.taken_back is not None:
            self._taken_back.setdefault(attempt_id, state.taken_back)  # the pod may be gone once the Job ends
        ending: Outcome | None = None
        if state.ended or state.refused is not None:
            ending = self._attempts.ending(
                handle,
                state.stop or state.reason,
                state.exit_code,
                interrupted=self._taken_back.pop(attempt_id, None),
                refused=state.refused,
                what=_WHAT,
            )
        return self._attempts.reports(handle, running=state.running, at=state.started_at, ending=ending)

    # --- helpers --------------------------------------------------------------------------------

    def _api(self) -> KubernetesApi:
        """The API's clients; the configuration is loaded at the first call (again after a failure)."""
        with self._lock:
            if self._api_loaded is None:
                self._api_loaded = connect(self._config)
            return self._api_loaded

    def _unusable(self, problem_now: str) -> str:
        """Take no work until the API answers again (asked every few seconds); ``problem_now``."""
        if self._usable is not False:
            log.warning("backend %s: %s", self.name, problem_now)
        self._usable = False
        self._next_probe = time.monotonic() + _PROBE_SECONDS
        return problem_now

    def _poll_some(self, namespace: str, handles: Sequence[Handle]) -> list[Report]:
        wanted = selector([int(h["attempt_id"]) for h in handles])
        try:
            api = self._api()
            jobs = api.batch.list_namespaced_job(namespace, label_selector=wanted, _request_timeout=TIMEOUT).items
            pods = api.core.list_namespaced_pod(namespace, label_selector=wanted, _request_timeout=TIMEOUT).items
        except (ModelrunnerError, *ApiError) as exc:  # asked again at the next poll
            said = exc.message if isinstance(exc, ModelrunnerError) else problem(exc)
            self._unusable(f"cannot read the Jobs in namespace {namespace}: {said}")
            return []
        by_name = {job.metadata.name: job for job in jobs}
        now = utcnow()
        reports: list[Report] = []
        for handle in handles:
            job = by_name.get(handle.get("job_name") or attempt_name(int(handle["attempt_id"])))
            uid = job.metadata.uid if job is not None else None
            own = [p for p in pods if any(o.uid == uid for o in p.metadata.owner_references or [])]
            found = self.reports_of(handle, job, own, now)
            if job is not None and not job_ended(job) and any(isinstance(r, Finished) for r in found):
                self._leftovers.add((namespace, job.metadata.name))  # it cannot start: nothing to wait for
            reports += found
        return reports

    def _jobs_of(self, api: KubernetesApi, namespace: str, handle: Handle, timeout: tuple[int, int]) -> list[str]:
        """The names of the attempt's Jobs, found by their labels."""
        labels = f"{ATTEMPT_LABEL}={int(handle['attempt_id'])}"
        if "run_id" in handle:
            labels += f",{RUN_LABEL}={int(handle['run_id'])}"
        if "attempt" in handle:
            labels += f",{NUMBER_LABEL}={int(handle['attempt'])}"
        found = api.batch.list_namespaced_job(namespace, label_selector=labels, _request_timeout=timeout)
        return [str(job.metadata.name) for job in found.items]

    def _stop(
        self, api: KubernetesApi, namespace: str, name: str, reason: AttemptStatus | None, timeout: tuple[int, int]
    ) -> None:
        """Record ``reason`` on the Job, then delete it and, in the background, its pod (which
        gets SIGTERM, and SIGKILL after its grace period). A Job gone already is no error."""
        if reason is not None:  # read back by a server that finds the Job (should its deletion fail)
            try:
                api.batch.patch_namespaced_job(name, namespace, stop_patch(reason), _request_timeout=timeout)
            except ApiException as exc:
                if exc.status == 404:
                    return
                log.info("backend %s: the reason was not written on the Job %s: %s", self.name, name, problem(exc))
        try:
            api.batch.delete_namespaced_job(name, namespace, propagation_policy="Background", _request_timeout=timeout)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _delete_leftovers(self) -> None:
        """Delete the Jobs that an attempt ended without (a create that failed midway, an image
        that cannot be pulled, a cancel that did not reach the server)."""
        for namespace, name in sorted(self._leftovers):
            try:
                self._stop(self._api(), namespace, name, None, TIMEOUT)
            except (ModelrunnerError, *ApiError) as exc:  # tried again at the next poll
                said = exc.message if isinstance(exc, ModelrunnerError) else problem(exc)
                log.warning("backend %s: the Job %s is not deleted yet: %s", self.name, name, said)
                continue
            self._leftovers.discard((namespace, name))

    def _same_job(self, api: KubernetesApi, namespace: str, name: str, job: AttemptJob) -> Any:
        """The Job ``name`` that exists already, when it is this attempt's; ModelrunnerError if not."""
        try:
            found = api.batch.read_namespaced_job(name, namespace, _request_timeout=TIMEOUT)
        except ApiError as exc:
            raise ModelrunnerError(f"the Job {name} exists already and cannot be read: {problem(exc)}") from exc
        labels = found.metadata.labels or {}
        if labels.get(RUN_LABEL) != str(job.run_id) or labels.get(NUMBER_LABEL) != str(job.attempt_number):
            raise ModelrunnerError(
                f"a Job {name} that is not this attempt's exists already in namespace {namespace} "
                "(does another modelrunner server, or another database, use the namespace?)"
            )
        return found
