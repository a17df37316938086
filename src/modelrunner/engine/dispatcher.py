"""The dispatcher: the one loop that claims queued runs for a backend, records what attempts
report, renews their leases (unless the runner holding one renews it: see RunnerLeases), enforces
timeouts and cancellations, and reaps lost attempts.

A server runs one dispatcher per backend it runs (``Dispatchers``); each claims only the runs
routed to its backend's name, and reaps only that backend's attempts, since only that backend
knows how to stop them."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from sqlalchemy.orm import Session

from modelrunner.backends.base import (
    Backend,
    BackendUnavailable,
    Finished,
    Handle,
    Progressed,
    Report,
    RunnerLeases,
    Started,
)
from modelrunner.clock import utcnow
from modelrunner.engine import attempts, retry_policy, run_profile
from modelrunner.engine.catalog import VersionCatalog
from modelrunner.engine.retry_policy import RetryPolicy
from modelrunner.engine.runner_identity import is_dead_runner, this_runner_id
from modelrunner.engine.states import FINAL_RUN_STATES, AttemptStatus, RunStatus
from modelrunner.engine.transition import transition
from modelrunner.errors import ModelrunnerError, NotFound, SpecError
from modelrunner.execution.job import AttemptJob, JobInput, Outcome, UpstreamFile
from modelrunner.metrics import LAUNCH_ERROR, LAUNCH_UNREACHABLE, Metrics
from modelrunner.process_log import about_attempt
from modelrunner.service_loop import ServiceLoop
from modelrunner.spec.file_params import as_model_sees
from modelrunner.spec.input_folders import folder_of
from modelrunner.spec.overrides import overrides_of
from modelrunner.store import queries
from modelrunner.store.database import Database
from modelrunner.store.tables import AttemptRow

log = logging.getLogger("modelrunner.dispatcher")

# How loudly an attempt's ending is logged: an operator looks for the failures.
_LEVELS = {
    AttemptStatus.FAILED: logging.WARNING,
    AttemptStatus.TIMED_OUT: logging.WARNING,
    AttemptStatus.LOST: logging.WARNING,
}

_FIRST_RECHECK_SECONDS = 2.0  # after a submit found the backend unreachable; doubled up to the last
_LAST_RECHECK_SECONDS = 60.0


@dataclass
class _Outage:
    """The backend could not be reached at submit: nothing is launched before ``recheck_at``
    (monotonic), when its health is asked again."""

    problem: str
    recheck_at: float
    wait: float = _FIRST_RECHECK_SECONDS


@dataclass
class _InFlight:
    run_id: int
    model: str
    handle: Handle
    timeout: float | None
    started: float | None = None  # monotonic, once the process runs
    stopping: bool = False


class Dispatcher:
    """Owns every attempt this process runs on one backend. ``wake()`` makes it act at once (a
    submit, a report)."""

    def __init__(
        self,
        database: Database,
        catalog: VersionCatalog,
        backend: Backend,
        *,
        backend_name: str,
        lease_seconds: float,
        poll_seconds: float,
        callback_url: str,
        metrics: Metrics,
        on_runs_changed: Callable[[], None] = lambda: None,
        model_environment: Callable[[], Sequence[str]] = tuple,
        artifacts_url: str = "",
    ) -> None:
        """``backend_name`` is the name runs are routed to (``backends:`` in modelrunner.yaml);
        ``callback_url`` is the server's URL as attempts reach it (their progress callbacks);
        ``model_environment`` gives the variables of a runner's environment that models see too;
        ``metrics`` counts the attempts' endings and launch failures; ``on_runs_changed`` is
        called after attempts' endings are committed (pipelines advance on it)."""
        self._database = database
        self._catalog = catalog
        self._retry_policy = RetryPolicy(catalog)
        self._backend = backend
        self.backend_name = backend_name
        self._lease = lease_seconds
        self._poll = poll_seconds
        self._callback_url = callback_url.rstrip("/")
        self._metrics = metrics
        self._on_runs_changed = on_runs_changed
        self._model_environment = model_environment
        self._artifacts_url = artifacts_url.rstrip("/")  # where uploaded files (file parameters) are
        metrics.add_backend(backend_name)
        self.runner_id = this_runner_id()
        self._inflight: dict[int, _InFlight] = {}
        self._pending: list[Report] = []  # polled, not yet committed: kept until the store has them
        self._loop = ServiceLoop(f"dispatcher-{backend_name}", self._logged_tick, interval=poll_seconds, log=log)
        self._next_heartbeat = 0.0
        self._next_reap = 0.0
        self._next_poll = 0.0
        self._outage: _Outage | None = None
        # Set by wake(); read and cleared by the loop, so the store is only asked what can have changed.
        self._maybe_queued = True
        self._maybe_cancelled = True

    def start(self) -> None:
        """Recover attempts left by a dead predecessor on this host, then start the loop."""
        with about_attempt(backend=self.backend_name):
            self._recover_dead_runners()
        self._loop.start()

    def stop(self) -> None:
        """Stop dispatching. Attempts still running are queued again (no retry spent) and their
        processes stopped, keeping their checkpoints; the backend's ``close`` waits for them."""
        self._loop.stop()
        with about_attempt(backend=self.backend_name):
            self._stop_attempts()

    def _stop_attempts(self) -> None:
        try:
            self._poll_reports()
            self._record_and_claim(claim=False)  # what already ended is recorded as it ended
        except Exception:
            log.exception("could not record the last attempt reports")
        for attempt_id, flight in list(self._inflight.items()):
            with self._about(attempt_id):
                with self._database.write() as session:
                    attempts.interrupt(session, attempt_id, "the server shut down while it ran")
                log.info("attempt %s stopped: the server shuts down; its run waits in the queue", attempt_id)
                # Stopped the way a preemption stops it: the model gets SIGTERM and the grace period
                # to write its checkpoint, which the run's next attempt starts from.
                self._backend.cancel(flight.handle, AttemptStatus.PREEMPTED)

    def wake(self, *, queued: bool = False, cancelled: bool = False) -> None:
        """Act now: on attempt reports; with ``queued`` a run was queued, with ``cancelled`` one
        was cancelled. Changes made by other processes are seen at the next poll."""
        if queued:
            self._maybe_queued = True
        if cancelled:
            self._maybe_cancelled = True
        self._loop.wake()

    def _about(self, attempt_id: int) -> AbstractContextManager[None]:
        """Lines logged in the block name the attempt, with its run and model while it runs here."""
        flight = self._inflight.get(attempt_id)
        if flight is None:
            return about_attempt(attempt_id=attempt_id)
        return about_attempt(run_id=flight.run_id, attempt_id=attempt_id, model=flight.model)

    # --- the loop -------------------------------------------------------------------------------

    def _logged_tick(self) -> float:
        with about_attempt(backend=self.backend_name):
            return self._tick()

    def _tick(self) -> float:
        """One round; the seconds until the next is due unless woken."""
        now = time.monotonic()
        if now >= self._next_poll:
            self._maybe_queued = self._maybe_cancelled = True
            self._next_poll = now + self._poll
        self._poll_reports()
        if self._pending or self._maybe_queued:
            self._record_and_claim(claim=True)
        self._stop_overdue()
        if self._maybe_cancelled:
            self._maybe_cancelled = False
            self._stop_cancelled()
        if now >= self._next_heartbeat:
            self._heartbeat()
            self._next_heartbeat = now + self._lease / 3
        if now >= self._next_reap:
            self._reap_expired()
            self._next_reap = now + self._shortest_lease() / 3
        return self._sleep_time()

    def _poll_reports(self) -> None:
        self._pending.extend(self._backend.poll([flight.handle for flight in self._inflight.values()]))

    def _record_and_claim(self, *, claim: bool) -> None:
        """Record reports and claim queued runs for free slots in one transaction, then launch.
        Reports leave ``_pending`` only once committed, so a failed transaction loses none."""
        # Outside the transaction: during an outage this asks the backend's engine (seconds).
        claim = claim and self._backend_answers()
        reports = self._pending
        try:
            finished, claimed = self._record_and_claim_in_one(reports, claim=claim, one_by_one=False)
        except ModelrunnerError:
            # A report cannot be recorded (its transaction rolled back): again, each report in
            # a savepoint of its own, so that the others are recorded.
            finished, claimed = self._record_and_claim_in_one(reports, claim=claim, one_by_one=True)
        self._pending = []
        if finished:
            self._on_runs_changed()
        self._recorded(reports)
        self._launch(claimed)

    def _record_and_claim_in_one(
        self, reports: list[Report], *, claim: bool, one_by_one: bool
    ) -> tuple[list[int], list[tuple[AttemptJob, _InFlight]]]:
        """One transaction: the reports (see _record_reports), then the claims."""
        with self._database.write() as session:
            finished = self._record_reports(session, reports, one_by_one=one_by_one)
            if finished:
                self._maybe_queued = True  # slots were freed, or a failed attempt was queued again
            claimed = []
            if claim and self._maybe_queued and self._backend.free_slots() > 0:
                self._maybe_queued = False
                with queries.events_together(session):
                    claimed = self._claim(session)
        return finished, claimed

    def _recorded(self, reports: list[Report]) -> None:
        """Log and count what the reports just committed say."""
        now = time.monotonic()
        for report in reports:
            with self._about(report.attempt_id):
                if isinstance(report, Started):
                    log.info("attempt %s started", report.attempt_id)
                elif isinstance(report, Progressed):
                    log.debug("attempt %s progress %s %s", report.attempt_id, report.fraction, report.message or "")
                elif isinstance(report, Finished):
                    outcome = report.outcome
                    error = f": {outcome.error}" if outcome.error else ""
                    log.log(
                        _LEVELS.get(outcome.status, logging.INFO),
                        "attempt %s %s%s",
                        report.attempt_id,
                        outcome.status.value,
                        error,
                    )
                    flight = self._inflight.pop(report.attempt_id, None)
                    seconds = now - flight.started if flight is not None and flight.started is not None else None
                    self._metrics.attempt_ended(self.backend_name, outcome.status, seconds)

    def _sleep_time(self) -> float:
        now = time.monotonic()
        deadlines = [self._next_poll - now, self._next_heartbeat - now]
        if self._outage is not None:
            deadlines.append(self._outage.recheck_at - now)
        for flight in self._inflight.values():
            if flight.timeout is not None and flight.started is not None and not flight.stopping:
                deadlines.append(flight.started + flight.timeout - now)
        return max(0.0, min(deadlines))

    # --- claiming -------------------------------------------------------------------------------

    def _claim(self, session: Session) -> list[tuple[AttemptJob, _InFlight]]:
        free = self._backend.free_slots()
        jobs: list[tuple[AttemptJob, _InFlight]] = []
        queued = queries.queued_runs(session, self.backend_name, limit=free)
        for run in queued:
            if run.slots > free and (self._inflight or jobs):
                self._maybe_queued = True  # first come, first served: wait for room, don't skip ahead
                break
            try:
                version = self._catalog.get(session, run.model_name, run.model_version)
            except (NotFound, SpecError) as exc:
                # A damaged store (submit records the version first), or a resource class removed
                # from modelrunner.yaml since: one bad run must not stop the queue behind it.
                transition(session, run.id, RunStatus.FAILED, reason=f"cannot run: {exc.message}")
                with about_attempt(run_id=run.id, model=run.model_name):
                    log.warning("run %s failed before any attempt: %s", run.id, exc.message)
                continue
            attempt = attempts.claim(session, run.id, self.backend_name, self.runner_id, self._lease_until())
            if attempt is None:
                continue
            part = version.spec.part(run.step)
            # A run's own timeout (spec/overrides.py), checked against the model's limit at submit.
            resources = part.resources.model_copy(update=overrides_of(run.plan))
            # File parameters: the model sees each uploaded file in its inputs, by a path.
            params, uploads = as_model_sees(version.spec.params, run.params)
            job = AttemptJob(
                run_id=run.id,
                attempt_id=attempt.attempt_id,
                attempt_number=attempt.number,
                model_name=run.model_name,
                model_version=run.model_version,
                command=list(part.command or ()),
                notebook=part.notebook,
                image=part.image,
                environment=part.environment,
                params=params,
                snapshot_uri=version.snapshot_uri,
                declared_outputs=tuple(o.path for o in part.outputs),
                slots=run.slots,
                resources=resources,
                inputs=tuple(
                    JobInput(name, i["dataset"], i["version"], folder_of(version.spec.input_folders, name, run.params))
                    for name, i in sorted(run.inputs.items())
                ),
                upstream=(
                    *(UpstreamFile(**f) for f in (run.plan or {}).get("upstream", [])),
                    *(UpstreamFile(folder, name, f"{self._artifacts_url}/{key}") for folder, name, key in uploads),
                ),
                item=json.dumps(run.item) if run.item_key is not None else None,
                last_attempt=retry_policy.is_last_chance(attempt.interrupted_before, part.retries),
                callback_url=f"{self._callback_url}/api/v1/attempts/{attempt.attempt_id}",
                callback_token=attempt.callback_token,
                passed_variables=tuple(self._model_environment()),
                progress_bars=version.spec.progress.bars,
                profile_variables=run_profile.variables_of(run.plan),
            )
            handle = _handle_of(self.runner_id, attempt.attempt_id, run.id, attempt.number)
            jobs.append((job, _InFlight(run.id, run.model_name, handle, resources.timeout)))
            free -= run.slots
        if len(queued) == len(jobs) and free <= 0:
            self._maybe_queued = True  # there may be more behind what fitted
        return jobs

    def _launch(self, jobs: list[tuple[AttemptJob, _InFlight]]) -> None:
        for index, (job, flight) in enumerate(jobs):
            self._inflight[job.attempt_id] = flight
            # The backend's own lines about the attempt, in this thread or in one it hands the
            # context to, name it too.
            with self._about(job.attempt_id):
                unreachable = self._launch_one(job, flight)
            if unreachable is not None:
                self._backend_unreachable(unreachable, [j for j, _ in jobs[index:]])
                return

    def _launch_one(self, job: AttemptJob, flight: _InFlight) -> str | None:
        """Submit one attempt; the problem if the backend cannot be reached (nothing is launched)."""
        try:
            flight.handle = self._backend.submit(job)
        except BackendUnavailable as exc:
            self._inflight.pop(job.attempt_id, None)
            self._metrics.launch_failed(self.backend_name, LAUNCH_UNREACHABLE)
            return exc.message
        except Exception as exc:
            log.exception("backend %s could not launch attempt %s", self.backend_name, job.attempt_id)
            self._inflight.pop(job.attempt_id, None)
            with self._database.write() as session:
                attempts.finish(session, job.attempt_id, _launch_failure(exc), self._retry_policy)
            self._metrics.launch_failed(self.backend_name, LAUNCH_ERROR)
            self._metrics.attempt_ended(self.backend_name, AttemptStatus.FAILED, None)
            return None
        log.info("attempt %s of run %s launched", job.attempt_id, job.run_id)
        return None

    def _backend_unreachable(self, problem: str, unlaunched: list[AttemptJob]) -> None:
        """Queue the runs of ``unlaunched`` again, spending no retry, and launch nothing until the
        backend answers (see _backend_answers)."""
        reason = f"not launched: {problem}; the run waits in the queue until backend {self.backend_name} answers"
        with self._database.write() as session:
            for job in unlaunched:
                attempts.interrupt(session, job.attempt_id, reason)
        if self._outage is None:
            log.warning("backend %s: %s; its runs wait in the queue until it answers", self.backend_name, problem)
        self._outage = _Outage(problem, time.monotonic() + _FIRST_RECHECK_SECONDS)
        self._maybe_queued = True

    def _backend_answers(self) -> bool:
        """False while the backend is known to be unreachable. Its health is asked again at
        growing intervals, so that an outage costs neither a stream of failed submits nor a
        record of each."""
        outage = self._outage
        if outage is None:
            return True
        now = time.monotonic()
        if now < outage.recheck_at:
            self._maybe_queued = True  # still queued: to be claimed once it answers
            return False
        problem = self._backend.health()
        if problem is None:
            log.info("backend %s answers again", self.backend_name)
            self._outage = None
            return True
        wait = min(outage.wait * 2, _LAST_RECHECK_SECONDS)
        self._outage = _Outage(problem, now + wait, wait)
        self._maybe_queued = True
        return False

    def _lease_until(self) -> dt.datetime:
        return utcnow() + dt.timedelta(seconds=self._lease)

    # --- what attempts report -------------------------------------------------------------------

    def _record_reports(self, session: Session, reports: list[Report], *, one_by_one: bool) -> list[int]:
        """Record what the backend reported; the ids of attempts that finished. All together
        (the first error raises, and the caller's transaction rolls back), or ``one_by_one``,
        each in a savepoint, a report that cannot be recorded logged and left out."""
        finished = [report.attempt_id for report in reports if isinstance(report, Finished)]
        if not one_by_one:
            with queries.events_together(session):
                for report in reports:
                    self._record(session, report)
            return finished
        for report in reports:
            try:
                with session.begin_nested(), queries.events_together(session):
                    self._record(session, report)
            except ModelrunnerError as exc:
                with self._about(report.attempt_id):
                    log.warning("attempt %s: report not recorded: %s", report.attempt_id, exc.message)
        return finished

    def _record(self, session: Session, report: Report) -> None:
        flight = self._inflight.get(report.attempt_id)
        if isinstance(report, Started):
            attempts.mark_started(session, report.attempt_id, report.handle, report.at)
            if flight is not None:
                flight.handle = report.handle
                flight.started = time.monotonic()
        elif isinstance(report, Progressed):
            attempts.record_progress(session, report.attempt_id, report.fraction, report.message)
        elif isinstance(report, Finished):
            attempts.finish(session, report.attempt_id, report.outcome, self._retry_policy)

    # --- timeouts, cancellations, leases --------------------------------------------------------

    def _stop_cancelled(self) -> None:
        if not self._inflight:
            return
        with self._database.read() as session:
            statuses = queries.run_statuses(session, {f.run_id for f in self._inflight.values()})
        for attempt_id, flight in self._inflight.items():
            if not flight.stopping and statuses.get(flight.run_id) in FINAL_RUN_STATES:
                self._stop(attempt_id, flight, AttemptStatus.CANCELLED)

    def _stop_overdue(self) -> None:
        now = time.monotonic()
        for attempt_id, flight in self._inflight.items():
            if flight.stopping or flight.timeout is None or flight.started is None:
                continue
            if now - flight.started >= flight.timeout:
                self._stop(attempt_id, flight, AttemptStatus.TIMED_OUT)

    def _stop(self, attempt_id: int, flight: _InFlight, reason: AttemptStatus) -> None:
        with self._about(attempt_id):
            log.info("attempt %s: stopping its model (%s)", attempt_id, reason.value)
            self._stop_attempt(attempt_id, flight, reason)

    def _stop_attempt(self, attempt_id: int, flight: _InFlight, reason: AttemptStatus) -> None:
        flight.stopping = True
        self._backend.cancel(flight.handle, reason)
        seconds = self._runner_lease_seconds(attempt_id)
        if seconds is not None:
            # Its runner now has the grace period on top of its lease to stop the model and say so.
            with self._database.write() as session:
                attempts.renew_lease(session, attempt_id, utcnow() + dt.timedelta(seconds=seconds))

    def _runner_lease_seconds(self, attempt_id: int) -> float | None:
        """None when this dispatcher keeps the attempt's lease; else the seconds a sign of life
        from the runner holding it keeps it (see RunnerLeases)."""
        if isinstance(self._backend, RunnerLeases):
            return self._backend.runner_lease_seconds(attempt_id)
        return None

    def _shortest_lease(self) -> float:
        """The shortest lease an attempt held here lives by: a runner that goes silent is found
        within a third of it."""
        runners = (self._runner_lease_seconds(attempt_id) for attempt_id in self._inflight)
        return min([self._lease, *(seconds for seconds in runners if seconds is not None)])

    def _heartbeat(self) -> None:
        # An attempt a runner holds lives by that runner's heartbeats alone: its lease must run
        # out when the runner goes silent, however alive this process is.
        kept_here = [a for a in self._inflight if self._runner_lease_seconds(a) is None]
        if kept_here:
            with self._database.write() as session:
                queries.renew_leases(session, self.runner_id, kept_here, self._lease_until())

    def _reap_expired(self) -> None:
        now = utcnow()
        held_by_runners = {a: f for a, f in self._inflight.items() if self._runner_lease_seconds(a) is not None}
        with self._database.read() as session:
            expired = queries.expired_attempts(session, now, self.backend_name)
            lapsed = queries.lapsed_attempts(session, held_by_runners, now) if held_by_runners else []
        for attempt in expired:
            if attempt.id not in self._inflight:
                self._reap(attempt, f"attempt {attempt.number} lost: its lease expired without a heartbeat")
        for attempt_id in lapsed:
            # Its runner went silent (another server may have found so first and recorded the
            # loss). The backend forgets the attempt and reports how it ended, which is recorded
            # as any report is (a loss recorded already stands), and the attempt leaves _inflight.
            self._backend.cancel(held_by_runners[attempt_id].handle, AttemptStatus.LOST)

    def _recover_dead_runners(self) -> None:
        with self._database.read() as session:
            orphaned = [a for a in queries.active_attempts(session, self.backend_name) if is_dead_runner(a.runner_id)]
        for attempt in orphaned:
            self._reap(attempt, f"attempt {attempt.number} lost: the server running it stopped")

    def _reap(self, attempt: AttemptRow, reason: str) -> None:
        # Stop whatever may still run for it first, so a retry never runs beside its predecessor.
        handle = attempt.handle or _handle_of(attempt.runner_id, attempt.id, attempt.run_id, attempt.number)
        with about_attempt(run_id=attempt.run_id, attempt_id=attempt.id):
            self._backend.cancel(handle, AttemptStatus.LOST)
            with self._database.write() as session:
                lost = attempts.lose(session, attempt.id, reason, self._retry_policy)
            if lost:
                log.warning("run %s: %s", attempt.run_id, reason)
                self._metrics.attempt_ended(self.backend_name, AttemptStatus.LOST, None)
        self.wake()


class Dispatchers:
    """The dispatchers of one process, by backend name: started, woken and stopped together."""

    def __init__(self, dispatchers: Mapping[str, Dispatcher]) -> None:
        self._by_name = dict(dispatchers)
        self.runner_id = this_runner_id()  # every dispatcher of a process has this one

    def __iter__(self) -> Iterator[Dispatcher]:
        return iter(self._by_name.values())

    def __contains__(self, backend: object) -> bool:
        return backend in self._by_name

    def __getitem__(self, backend: str) -> Dispatcher:
        return self._by_name[backend]

    @property
    def backends(self) -> list[str]:
        """The names of the backends this process runs, in the order they are declared."""
        return list(self._by_name)

    def start(self) -> None:
        for dispatcher in self:
            dispatcher.start()

    def stop(self) -> None:
        """Stop every dispatcher (each queues its running attempts again; see Dispatcher.stop)."""
        for dispatcher in self:
            dispatcher.stop()

    def wake(self, *, queued: bool = False, cancelled: bool = False, backend: str | None = None) -> None:
        """Wake the dispatcher of ``backend`` (all of them without it); see Dispatcher.wake. A
        backend this process does not run is no one's to wake here."""
        if backend is None:
            for dispatcher in self:
                dispatcher.wake(queued=queued, cancelled=cancelled)
        elif backend in self._by_name:
            self._by_name[backend].wake(queued=queued, cancelled=cancelled)


def _handle_of(runner_id: str, attempt_id: int, run_id: int, number: int) -> Handle:
    """What is known of an attempt before its backend reported a handle of its own."""
    return {"host": runner_id.rsplit(":", 2)[0], "attempt_id": attempt_id, "run_id": run_id, "attempt": number}


def _launch_failure(exc: Exception) -> Outcome:
    return Outcome(AttemptStatus.FAILED, error=f"the backend could not launch the attempt: {exc}")
