"""The ``dask`` backend: each attempt is one task of a Dask cluster (dask.distributed), which
runs the attempt on a worker as ``modelrunner exec`` does (execution/remote.py).

How the engine's words map to Dask:

- submit: ``client.submit(run_on_worker, job, key="modelrunner-attempt-<id>-<random>",
  pure=False)``, holding the declared worker ``resources`` per CPU the model asks for (the key
  is unique: servers with databases of their own may share a cluster);
- started: the task tells the backend through a Dask event topic the moment the model's
  process runs (with the worker and pid);
- lost: the worker that ran the task died (the scheduler marks the task suspicious, or moved
  it to another worker), the task errored with KilledWorker, or the scheduler forgot it; the
  task is then cancelled so that Dask does not run it again behind the engine's back;
- cancel: sets the Dask Event ``<key>-cancel``, which the task watches; the task
  then stops everything the model started (SIGTERM, SIGKILL after the grace period). A task
  whose future is released (its client went away) stops its model the same way, and a worker
  that dies takes its models with it (they die with their parent).

Handles are JSON and name the task key and the event, so a restarted server can stop an orphan.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, ClassVar

import distributed

from modelrunner.backends.base import BackendUnavailable, Finished, Handle, RemoteServices, Report, Started
from modelrunner.clock import utcnow
from modelrunner.engine.states import AttemptStatus
from modelrunner.execution.job import AttemptJob, Outcome, stopped
from modelrunner.execution.remote import (
    RemoteAttempt,
    RemoteJob,
    log_key,
    outcome_from_dict,
    outcome_to_dict,
    parse_job,
)
from modelrunner.spec.backend_spec import DaskBackendSpec

log = logging.getLogger("modelrunner.backends.dask")

_CONNECT_SECONDS = 5.0  # how long one attempt to reach the scheduler may take
_RECONNECT_SECONDS = (1.0, 30.0)  # first and longest wait between attempts to reach it
_UNREACHABLE_LOG_SECONDS = 60.0  # how often an unreachable scheduler is logged again
_CHECK_SECONDS = 1.0  # how often the scheduler is asked whether running tasks lost their worker
_RESULT_SECONDS = 10.0
_STOP_MARGIN_SECONDS = 10.0  # after the grace period, a stopped task that has not ended is given up
_WATCH_SECONDS = 0.25  # how often a task checks whether it should stop


def task_key(attempt_id: int) -> str:
    """The key of the attempt's task, which also names its events. Unique, not just the attempt's
    id: ids repeat across the servers (and databases) that may share a Dask cluster, and the
    events of one attempt must never stop or skip another's."""
    return f"modelrunner-attempt-{attempt_id}-{uuid.uuid4().hex[:12]}"


def began_event(key: str) -> str:
    """Set when the attempt's task begins: a task that finds it set is a copy Dask started
    again after a worker died, which must not run (the engine decides about retries)."""
    return f"{key}-began"


def cancel_event(key: str) -> str:
    return f"{key}-cancel"


# --- on the worker ------------------------------------------------------------------------------


def run_on_worker(job_json: str, topic: str) -> dict[str, Any]:
    """The Dask task of one attempt: run it with RemoteAttempt, say when the model started (on
    ``topic``), stop it when its cancel event is set or its task is released, return the outcome
    as JSON-able data."""
    remote = parse_job(job_json)
    attempt_id = remote.job.attempt_id
    worker = distributed.get_worker()
    client = distributed.get_client()
    key = str(worker.get_current_task())
    stop = _event(cancel_event(key), client)
    began = _event(began_event(key), client)
    if _quietly(began.is_set, False):
        again = Outcome(AttemptStatus.LOST, error="Dask started the attempt again after its worker died")
        return {"outcome": outcome_to_dict(again), "worker": worker.address, "pid": None}
    _quietly(began.set, None)
    attempt = RemoteAttempt(remote)
    reason: AttemptStatus | None = None  # why the attempt is being stopped
    if _quietly(stop.is_set, False):  # cancelled while it waited, or a copy Dask started again
        reason = AttemptStatus.CANCELLED
        attempt.stop(reason)
    started: queue.SimpleQueue[int] = queue.SimpleQueue()
    ended: list[Outcome] = []
    runner = threading.Thread(
        target=lambda: ended.append(attempt.run(on_started=started.put)), name=f"attempt-{attempt_id}", daemon=True
    )
    runner.start()
    pid: int | None = None
    next_check = 0.0
    while runner.is_alive():
        with contextlib.suppress(queue.Empty):
            pid = started.get(timeout=_WATCH_SECONDS)
            message = {
                "attempt_id": attempt_id,
                "key": key,
                "worker": worker.address,
                "host": socket.gethostname(),
                "pid": pid,
            }
            _quietly(partial(client.log_event, topic, {**message, "at": time.time()}), None)
        if reason is None and time.monotonic() >= next_check:
            next_check = time.monotonic() + _WATCH_SECONDS
            if _quietly(stop.is_set, False):
                reason = AttemptStatus.CANCELLED
            elif _released(worker, key):
                reason = AttemptStatus.LOST
            if reason is not None:
                attempt.stop(reason)
    runner.join()
    outcome = ended[0] if ended else Outcome(AttemptStatus.FAILED, error="the attempt ended without an outcome")
    return {"outcome": outcome_to_dict(outcome), "worker": worker.address, "pid": pid}


def _released(worker: Any, key: Any) -> bool:
    """Whether the scheduler no longer wants this task (its client left, or it was cancelled)."""
    try:
        task = worker.state.tasks.get(key)
    except AttributeError:  # a worker without this state: rely on the cancel event alone
        return False
    return task is None or task.state in ("cancelled", "released", "forgotten")


def _event(name: str, client: Any) -> Any:
    """The distributed.Event called ``name``."""
    return distributed.Event(name, client=client)  # type: ignore[no-untyped-call]


def _quietly(call: Callable[[], Any], default: Any) -> Any:
    """The call's result, or ``default`` if the scheduler could not be asked (tried again later)."""
    try:
        return call()
    except Exception:
        return default


# --- on the server ------------------------------------------------------------------------------


@dataclass
class _Flight:
    job: AttemptJob
    future: Any  # distributed.Future
    slots: int
    handle: Handle
    submitted: float
    worker: str | None = None  # once started
    stop_reason: AttemptStatus | None = None
    stop_deadline: float | None = None


class DaskBackend:
    """Submits attempts to the Dask scheduler of ``config``; see the module's docstring.

    The connection is made in the background and made again when lost: while the scheduler
    cannot be reached, the backend has no free slots (runs stay queued) and says so in the log.
    """

    type: ClassVar[str] = "dask"

    def __init__(
        self,
        name: str,
        config: DaskBackendSpec,
        services: RemoteServices,
    ) -> None:
        """``artifacts`` must be reachable from the workers under the same URL (attempts leave
        their outputs and log there; the log is copied into ``logs`` as each ends); ``wake`` is
        called when there is something to poll."""
        self.name = name
        self._config = config
        self._artifacts = services.artifacts
        self._logs = services.logs
        self._grace = services.grace_seconds
        self._wake = services.wake
        self._topic = f"modelrunner-{name}"
        self._lock = threading.Lock()
        self._client: Any = None  # distributed.Client, once connected
        self._connector: threading.Thread | None = None
        self._next_connect = 0.0
        self._reconnect_wait = _RECONNECT_SECONDS[0]
        self._problem: str | None = None  # why the scheduler cannot be reached, for health()
        self._next_unreachable_log = 0.0
        self._flights: dict[int, _Flight] = {}
        self._taken = 0
        self._events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._to_stop: set[str] = set()  # cancel events still to set (the scheduler was unreachable)
        self._next_check = 0.0
        self._closed = False

    # --- the backend contract -------------------------------------------------------------------

    def free_slots(self) -> int:
        if self._connected() is None:
            return 0
        with self._lock:
            return self._config.slots - self._taken

    def health(self) -> str | None:
        if self._connected() is not None:
            return None
        with self._lock:
            problem = self._problem
        return problem or f"connecting to the Dask scheduler {self._config.scheduler}"

    def submit(self, job: AttemptJob) -> Handle:
        client = self._connected()
        if client is None:
            raise BackendUnavailable(f"the Dask scheduler {self._config.scheduler} cannot be reached")
        slots = min(job.slots, self._config.slots)  # a model asking for more than there is still runs
        resources = {name: amount * slots for name, amount in self._config.resources.items()} or None
        key = task_key(job.attempt_id)
        remote = RemoteJob(job, self._artifacts.url, self._grace)
        future = client.submit(
            run_on_worker, remote.to_json(), self._topic, key=key, resources=resources, pure=False, retries=0
        )
        handle: Handle = {
            "backend": self.type,
            "scheduler": self._config.scheduler,
            "key": key,
            "event": cancel_event(key),
            "attempt_id": job.attempt_id,
            "run_id": job.run_id,
            "attempt": job.attempt_number,
        }
        with self._lock:
            self._flights[job.attempt_id] = _Flight(job, future, slots, handle, time.monotonic())
            self._taken += slots
        future.add_done_callback(lambda _: self._wake())
        return handle

    def poll(self, handles: Sequence[Handle]) -> list[Report]:
        # Every attempt of this backend is followed here; ``handles`` need no lookup.
        client = self._connected()
        reports: list[Report] = self._started_reports()
        if client is not None:
            self._set_pending_stops(client)
            if time.monotonic() >= self._next_check:
                self._next_check = time.monotonic() + _CHECK_SECONDS
                reports.extend(self._lost_on_scheduler(client))
        with self._lock:
            flights = list(self._flights.values())
        for flight in flights:
            ending = self._ending_of(flight)
            if ending is None:
                continue
            if flight.worker is None and ending.exit_code is not None:
                # The model ran but its start was never heard of: a run must be running to end.
                reports.append(Started(flight.job.attempt_id, flight.handle, utcnow()))
            self._fetch_log(flight.job)  # before Finished: a run that has ended shows its log
            reports.append(Finished(flight.job.attempt_id, ending))
            self._forget(flight, client)
        return reports

    def _fetch_log(self, job: AttemptJob) -> None:
        uri = self._artifacts.uri(log_key(job.run_id, job.attempt_number))
        try:
            self._artifacts.get_file(uri, self._logs.path(job.run_id, job.attempt_number))
        except FileNotFoundError:
            pass  # stopped or lost before it wrote one
        except Exception as exc:  # the attempt's ending matters more than its log
            log.warning("attempt %s: its log could not be fetched from %s: %s", job.attempt_id, uri, exc)

    def cancel(self, handle: Handle, reason: AttemptStatus) -> None:
        attempt_id = int(handle["attempt_id"])
        with self._lock:
            flight = self._flights.get(attempt_id)
            if flight is not None and flight.stop_reason is None:
                flight.stop_reason = reason
                flight.stop_deadline = time.monotonic() + self._grace + _STOP_MARGIN_SECONDS
            self._to_stop.add(str(handle["event"]))
        client = self._connected()
        if client is not None:
            self._set_pending_stops(client)
        if flight is None and client is not None:
            # An orphan of a server that stopped: its task was released with that server's
            # connection, and the event (set above) stops it if it still runs.
            log.info("attempt %s: asked the Dask task %s to stop", attempt_id, handle["key"])
        self._wake()

    def close(self) -> None:
        """Wait (the grace period and a little more) for the tasks to end, cancel what remains
        and close the connection."""
        deadline = time.monotonic() + self._grace + 5
        while time.monotonic() < deadline:
            with self._lock:
                pending = [f.future for f in self._flights.values() if not f.future.done()]
            if not pending:
                break
            time.sleep(0.05)
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
            futures = [f.future for f in self._flights.values()]
        if client is not None:
            with contextlib.suppress(Exception):
                if futures:
                    client.cancel(futures)
            with contextlib.suppress(Exception):
                client.close(timeout=_CONNECT_SECONDS)

    # --- what tasks report ----------------------------------------------------------------------

    def _on_event(self, event: tuple[float, Any]) -> None:
        """Called by the Dask client (in its own thread) for each event on our topic."""
        _, message = event
        if isinstance(message, dict) and "attempt_id" in message:
            self._events.put(message)
            self._wake()

    def _started_reports(self) -> list[Report]:
        reports: list[Report] = []
        while True:
            try:
                message = self._events.get_nowait()
            except queue.Empty:
                return reports
            with self._lock:
                flight = self._flights.get(int(message["attempt_id"]))
                if flight is None or flight.worker is not None or message.get("key") != flight.handle["key"]:
                    # Not ours (any more), or a copy Dask started again (it is stopped as lost).
                    continue
                flight.worker = str(message["worker"])
                flight.handle = {
                    **flight.handle,
                    "worker": flight.worker,
                    "host": message.get("host"),
                    "pid": message.get("pid"),
                }
            at = _utc(float(message.get("at", time.time())))
            reports.append(Started(flight.job.attempt_id, flight.handle, at))

    def _ending_of(self, flight: _Flight) -> Outcome | None:
        """How the attempt ended, once its task did (or once it was given up after a stop)."""
        future = flight.future
        status = future.status
        if status == "finished":
            try:
                result = future.result(timeout=_RESULT_SECONDS)
                outcome = outcome_from_dict(result["outcome"])
            except Exception as exc:
                return Outcome(AttemptStatus.LOST, error=f"the result of the Dask task could not be fetched: {exc}")
            return _as_stopped(outcome, flight.stop_reason)
        if status == "error":
            error = _quietly(lambda: future.exception(timeout=_RESULT_SECONDS), None)
            if isinstance(error, distributed.KilledWorker):
                return Outcome(AttemptStatus.LOST, error=f"Dask workers died while running the attempt: {error}")
            if flight.stop_reason is not None:
                return stopped(flight.stop_reason)
            return Outcome(AttemptStatus.FAILED, error=f"the Dask task failed: {type(error).__name__}: {error}")
        if status in ("cancelled", "lost"):
            if flight.stop_reason is not None:
                return stopped(flight.stop_reason)
            with self._lock:
                self._to_stop.add(str(flight.handle["event"]))  # should the task still run somewhere
            return Outcome(AttemptStatus.LOST, error="the Dask scheduler dropped the attempt (connection lost?)")
        if flight.stop_deadline is not None and time.monotonic() > flight.stop_deadline:
            assert flight.stop_reason is not None
            log.warning("attempt %s: the Dask task did not end when stopped; cancelling it", flight.job.attempt_id)
            _quietly(future.cancel, None)
            return stopped(flight.stop_reason)
        return None

    def _lost_on_scheduler(self, client: Any) -> list[Report]:
        """Attempts whose worker died: the scheduler counts the task as suspicious, runs it on
        another worker, or (once it had started) forgot it."""
        with self._lock:
            waiting = {str(f.handle["key"]): f for f in self._flights.values() if not f.future.done()}
        if not waiting:
            return []

        def task_states(dask_scheduler: Any, keys: list[str]) -> dict[str, Any]:
            # Runs on the scheduler (sent by value, so the scheduler needs no modelrunner).
            states = {}
            for key in keys:
                task = dask_scheduler.tasks.get(key)
                if task is not None:
                    worker = task.processing_on.address if task.processing_on is not None else None
                    states[key] = {"state": task.state, "suspicious": task.suspicious, "worker": worker}
            return states

        try:
            states = client.run_on_scheduler(task_states, keys=list(waiting))
        except Exception as exc:
            log.debug("could not ask the Dask scheduler about its tasks: %s", exc)
            return []
        reports: list[Report] = []
        for key, flight in waiting.items():
            state = states.get(key)
            if state is None:
                lost = flight.worker is not None and not flight.future.done()
                why = "the Dask scheduler no longer knows its task"
            elif state["suspicious"] > 0:
                lost, why = True, "its Dask worker died while running it"
            else:
                moved = state["worker"] is not None and state["worker"] != flight.worker
                lost = flight.worker is not None and (moved or state["state"] in ("no-worker", "queued", "waiting"))
                why = "its Dask worker went away while running it"
            if lost and flight.stop_reason is None:
                log.warning("attempt %s lost: %s", flight.job.attempt_id, why)
                reports.append(Finished(flight.job.attempt_id, Outcome(AttemptStatus.LOST, error=why)))
                with self._lock:
                    self._to_stop.add(str(flight.handle["event"]))  # a copy Dask may start elsewhere stops at once
                self._forget(flight, client)
        return reports

    def _forget(self, flight: _Flight, client: Any) -> None:
        attempt_id = flight.job.attempt_id
        with self._lock:
            if self._flights.pop(attempt_id, None) is None:
                return
            self._taken -= flight.slots
            stopped = flight.stop_reason is not None
        ended = flight.future.done()
        if not ended:
            _quietly(flight.future.cancel, None)
        if ended and client is not None:
            # The task has ended: its events are done with (unset ones take no room on the scheduler).
            # Those of a lost task stay set, so that a copy Dask may start again stops at once.
            _quietly(_event(began_event(str(flight.handle["key"])), client).clear, None)
            if stopped:
                _quietly(_event(str(flight.handle["event"]), client).clear, None)

    def _set_pending_stops(self, client: Any) -> None:
        with self._lock:
            pending = list(self._to_stop)
        for event in pending:
            try:
                _event(event, client).set()
            except Exception as exc:
                log.warning("could not ask the Dask task %s to stop yet: %s", event.removesuffix("-cancel"), exc)
                return
            with self._lock:
                self._to_stop.discard(event)

    # --- the connection -------------------------------------------------------------------------

    def _connected(self) -> Any:
        """The client when connected; otherwise None, with a connection attempt under way."""
        with self._lock:
            client = self._client
            if client is not None and client.status == "running":
                return client
            if self._closed:
                return None
            self._client = None
            if self._connector is not None and self._connector.is_alive():
                return None
            if time.monotonic() < self._next_connect:
                return None
            self._connector = threading.Thread(
                target=self._connect, args=(client,), name=f"dask-connect-{self.name}", daemon=True
            )
            self._connector.start()
        return None

    def _connect(self, previous: Any) -> None:
        if previous is not None:
            log.warning("lost the connection to the Dask scheduler %s; connecting again", self._config.scheduler)
            with contextlib.suppress(Exception):
                previous.close(timeout=_CONNECT_SECONDS)
        try:
            client: Any = _new_client(self._config.scheduler, f"modelrunner-{self.name}")
            client.subscribe_topic(self._topic, self._on_event)
        except Exception as exc:
            self._unreachable(exc)
            return
        with self._lock:
            if self._closed:
                client.close()
                return
            self._client = client
            self._reconnect_wait = _RECONNECT_SECONDS[0]
            self._problem = None
        log.info("backend %s: connected to the Dask scheduler %s", self.name, self._config.scheduler)
        self._wake()

    def _unreachable(self, exc: Exception) -> None:
        now = time.monotonic()
        with self._lock:
            self._next_connect = now + self._reconnect_wait
            self._reconnect_wait = min(self._reconnect_wait * 2, _RECONNECT_SECONDS[1])
            self._problem = f"cannot reach the Dask scheduler {self._config.scheduler}: {exc}"
            report = now >= self._next_unreachable_log
            if report:
                self._next_unreachable_log = now + _UNREACHABLE_LOG_SECONDS
        if report:
            log.warning(
                "backend %s: cannot reach the Dask scheduler %s (%s); its runs stay queued until it answers",
                self.name,
                self._config.scheduler,
                exc,
            )


def _new_client(address: str, name: str) -> Any:
    """A connected distributed.Client; raises (OSError, TimeoutError) when the scheduler does not answer."""
    # Not the process's default client: the server may run beside other Dask code.
    return distributed.Client(address, timeout=_CONNECT_SECONDS, set_as_default=False, name=name)  # type: ignore[no-untyped-call]


def _as_stopped(outcome: Outcome, reason: AttemptStatus | None) -> Outcome:
    """The task says "cancelled" for any stop; the engine asked for ``reason`` (a timeout, say)."""
    if reason is None or outcome.status not in (AttemptStatus.CANCELLED, AttemptStatus.LOST):
        return outcome
    return replace(stopped(reason, outcome.exit_code), partial_outputs=outcome.partial_outputs)


def _utc(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)
