"""The ``slurm`` backend: each attempt is one Slurm batch job running ``modelrunner exec``
(execution/remote.py) on a node of the cluster.

How the engine's words map to Slurm:

- submit: ``sbatch --parsable --no-requeue`` of a small script that holds the job description
  (so the nodes need no shared folder for it), named ``modelrunner-<attempt id>``, with
  ``--cpus-per-task`` from ``resources.cpu``, ``--mem`` from ``resources.memory``, ``--time``
  from ``resources.timeout`` plus the grace period (in whole minutes; a backstop: the engine
  stops the attempt at its timeout), ``--gres=gpu:N`` from ``resources.gpus``, and the
  partition and account of the run's resource class (``classes:``) or of the backend;
- started: ``squeue`` shows the job RUNNING;
- ended: the job left the running states; how the attempt ended is read from the outcome
  ``modelrunner exec`` left in the artifact store, and Slurm's own verdict fills in for an
  attempt that could not say: TIMEOUT is ``timed_out``, PREEMPTED ``preempted``, NODE_FAIL,
  BOOT_FAIL and a job cancelled by someone else ``lost`` (the engine retries those on its
  lost/preempted budget), anything else without an outcome ``failed``;
- cancel: ``scancel <job id>``; Slurm sends SIGTERM to the job's processes (``modelrunner exec``
  passes it on and kills the model after the grace period) and SIGKILL after its ``KillWait``.

Slurm is asked from one thread of the backend (``squeue`` about the jobs in flight every
second, ``sinfo`` now and then when there are none), so that a slow or unreachable controller
never holds up the dispatcher: ``poll`` and ``free_slots`` only read what that thread learnt.
While the controller does not answer, the backend takes no work (runs stay queued) and
``health`` says why. Handles name the job id, so a restarted server can still stop a job.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from modelrunner.backends.base import Finished, Handle, RemoteServices, Report, Started
from modelrunner.clock import utcnow
from modelrunner.engine.states import AttemptStatus
from modelrunner.errors import ModelrunnerError
from modelrunner.execution.job import AttemptJob, Outcome, stopped
from modelrunner.execution.remote import RemoteJob, log_key, outcome_from_dict, outcome_key
from modelrunner.spec.backend_spec import SlurmBackendSpec

log = logging.getLogger("modelrunner.backends.slurm")

_SUBMIT_SECONDS = 30.0  # sbatch, scancel: how long one call may take
_QUERY_SECONDS = 15.0  # squeue, sacct, scontrol
_HEALTH_SECONDS = 5.0  # sinfo from health(): "returns within a few seconds"
_CHECK_SECONDS = 1.0  # how often squeue is asked about the jobs in flight
_IDLE_CHECK_SECONDS = 30.0  # how often the controller is checked with no job in flight
_RETRY_SECONDS = 5.0  # how soon an unreachable controller is tried again
_UNREACHABLE_LOG_SECONDS = 60.0
_FORGOTTEN_AFTER = 3  # checks in a row that find no trace of a job before it counts as gone
_STOP_MARGIN_SECONDS = 60.0  # after the grace period, a stopped job that has not ended is given up

# Job states (squeue %T, sacct State) in which the job's processes may still run.
_ACTIVE = frozenset(
    {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "RESIZING", "STOPPED"}
    | {"REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD", "SPECIAL_EXIT", "REVOKED"}
)
_WAITING = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD"})
# What `modelrunner exec` says of an attempt stopped from outside (SIGTERM: preempted): who
# stopped it and why is for the backend to tell.
_STOPPED = frozenset({AttemptStatus.CANCELLED, AttemptStatus.LOST, AttemptStatus.PREEMPTED})
# Final states in which Slurm, not the model, ended the job: Slurm's verdict wins over the
# model's death by its signals.
_ENDED_BY_SLURM = frozenset({"TIMEOUT", "DEADLINE", "PREEMPTED", "NODE_FAIL", "BOOT_FAIL", "CANCELLED"})
_FORGOTTEN = "FORGOTTEN"  # ours: neither squeue nor sacct knows the job any more
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T|k)i?B?\s*$")
_MEMORY_FACTORS = {"K": 1e3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_MEMORY_FACTORS |= {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


class SlurmUnavailable(ModelrunnerError):
    """A Slurm command could not be run or did not answer."""


def job_name(attempt_id: int) -> str:
    return f"modelrunner-{attempt_id}"


@dataclass
class _Flight:
    job: AttemptJob
    handle: Handle
    job_id: str
    state: str = "PENDING"
    exit_code: str | None = None  # Slurm's "code:signal", once the job ended
    misses: int = 0  # checks in a row that found no trace of the job
    started_reported: bool = False
    stop_reason: AttemptStatus | None = None
    stop_deadline: float | None = None

    @property
    def ended(self) -> bool:
        return self.state not in _ACTIVE


class SlurmBackend:
    """Submits attempts as Slurm batch jobs as ``config`` says; see the module's docstring."""

    type: ClassVar[str] = "slurm"

    def __init__(
        self,
        name: str,
        config: SlurmBackendSpec,
        services: RemoteServices,
        *,
        state_dir: Path,
    ) -> None:
        """``artifacts`` must be reachable from the nodes under the same URL (attempts leave
        their outputs, outcome and log there; the log is copied into ``logs`` as each ends);
        ``wake`` is called when there is something to poll."""
        self.name = name
        self._config = config
        self._artifacts = services.artifacts
        self._logs = services.logs
        self._grace = services.grace_seconds
        self._workdir = Path(config.workdir) if config.workdir else state_dir / "slurm" / name
        self._wake = services.wake
        self._lock = threading.Lock()
        self._flights: dict[int, _Flight] = {}
        self._to_stop: set[str] = set()  # scancel targets still to reach (the controller did not answer)
        self._problem: str | None = None  # why Slurm cannot be used, for health() and free_slots()
        self._checked = False  # whether the controller answered once
        self._next_unreachable_log = 0.0
        self._closing = threading.Event()
        self._poke = threading.Event()
        self._watcher: threading.Thread | None = None

    # --- the backend contract -------------------------------------------------------------------

    def free_slots(self) -> int:
        self._watch()
        with self._lock:
            if not self._checked or self._problem is not None:
                return 0
            return self._config.slots - len(self._flights)

    def health(self) -> str | None:
        self._watch()
        problem = self._controller_problem()
        self._set_problem(problem)
        return problem

    def submit(self, job: AttemptJob) -> Handle:
        self._watch()
        self._workdir.mkdir(parents=True, exist_ok=True)
        script = self._workdir / f"attempt-{job.attempt_id}.sh"
        script.touch(mode=0o600)  # it holds the attempt's callback token
        script.write_text(self._script(job), encoding="utf-8")
        done = self._slurm(["sbatch", *self.sbatch_options(job), str(script)], _SUBMIT_SECONDS)
        if done.returncode != 0:
            raise ModelrunnerError(f"sbatch refused the attempt: {_said(done)}")
        job_id = done.stdout.strip().split(";")[0]  # "id" or "id;cluster"
        if not job_id.isdigit():
            raise ModelrunnerError(f"sbatch answered {done.stdout.strip()!r}, not a job id")
        handle: Handle = {
            "backend": self.type,
            "job_id": job_id,
            "job_name": job_name(job.attempt_id),
            "attempt_id": job.attempt_id,
            "run_id": job.run_id,
            "attempt": job.attempt_number,
        }
        with self._lock:
            self._flights[job.attempt_id] = _Flight(job, handle, job_id)
        log.info("attempt %s: Slurm job %s submitted", job.attempt_id, job_id)
        self._poke.set()
        return handle

    def poll(self, handles: Sequence[Handle]) -> list[Report]:
        # Every attempt of this backend is followed by the watcher; ``handles`` need no lookup.
        self._watch()
        reports: list[Report] = []
        with self._lock:
            flights = list(self._flights.values())
        for flight in flights:
            attempt_id = flight.job.attempt_id
            if not flight.started_reported and self._ran(flight):
                flight.started_reported = True  # also a job that ended unseen: a run must be running to end
                reports.append(Started(attempt_id, flight.handle, utcnow()))
            outcome = self._ending_of(flight)
            if outcome is None:
                continue
            log.info("attempt %s: Slurm job %s ended %s: %s", attempt_id, flight.job_id, flight.state, outcome.status)
            self._fetch_log(flight)  # before Finished: a run that has ended shows its log
            reports.append(Finished(attempt_id, outcome))
            with self._lock:
                self._flights.pop(attempt_id, None)
            # Done with: the log store has the attempt's log (or Slurm's output, when there is none).
            for leftover in (f"attempt-{attempt_id}.sh", f"slurm-{flight.job_id}.out"):
                with contextlib.suppress(OSError):
                    (self._workdir / leftover).unlink()
        return reports

    def cancel(self, handle: Handle, reason: AttemptStatus) -> None:
        attempt_id = int(handle["attempt_id"])
        with self._lock:
            flight = self._flights.get(attempt_id)
            if flight is not None and flight.stop_reason is None:
                flight.stop_reason = reason
                flight.stop_deadline = time.monotonic() + self._grace + _STOP_MARGIN_SECONDS
        job_id = flight.job_id if flight is not None else handle.get("job_id")
        # Without a job id (a server stopped before the job started): our job of that name.
        target = str(job_id) if job_id else f"--name={job_name(attempt_id)} --user={os.getuid()}"
        if not self._scancel(target):
            with self._lock:
                self._to_stop.add(target)
            self._watch()
        self._poke.set()

    def close(self) -> None:
        """Stop the watcher; jobs still in flight were cancelled by the dispatcher, and scancel
        calls that did not reach the controller yet are tried once more."""
        with self._lock:
            pending = list(self._to_stop)
        for target in pending:
            self._scancel(target)
        self._closing.set()
        self._poke.set()
        if self._watcher is not None:
            self._watcher.join(_QUERY_SECONDS + 5)

    # --- sbatch ---------------------------------------------------------------------------------

    def sbatch_options(self, job: AttemptJob) -> list[str]:
        """The sbatch options of ``job``: the backend's, its resource class's, its resources'."""
        resources = job.resources
        chosen = self._config.classes.get(resources.resource_class or "")
        partition = (chosen.partition if chosen else None) or self._config.partition
        account = (chosen.account if chosen else None) or self._config.account
        options = [
            "--parsable",
            "--no-requeue",  # the engine decides whether an attempt runs again, not Slurm
            f"--job-name={job_name(job.attempt_id)}",
            f"--chdir={self._workdir}",
            f"--output={self._workdir / 'slurm-%j.out'}",
            "--nodes=1",
            "--ntasks=1",
            f"--cpus-per-task={max(1, math.ceil(resources.cpu or 1))}",
        ]
        if partition:
            options.append(f"--partition={partition}")
        if account:
            options.append(f"--account={account}")
        if resources.memory:
            options.append(f"--mem={slurm_memory(resources.memory)}")
        if resources.timeout:
            options.append(f"--time={slurm_minutes(resources.timeout + self._grace)}")
        if resources.gpus:
            options.append(f"--gres=gpu:{resources.gpus}")
        return [*options, *self._config.sbatch_args, *(chosen.sbatch_args if chosen else [])]

    def _script(self, job: AttemptJob) -> str:
        remote = RemoteJob(job, self._artifacts.url, self._grace).to_json()
        command = f"{shlex.quote(self._config.python)} -m modelrunner exec --job -"
        # The job description travels inside the script (sbatch copies it to the node).
        return f"#!/bin/sh\nexec {command} <<'MODELRUNNER_JOB_END'\n{remote}\nMODELRUNNER_JOB_END\n"

    # --- endings --------------------------------------------------------------------------------

    def _ending_of(self, flight: _Flight) -> Outcome | None:
        """How the attempt ended, once its job did (or was given up after a stop)."""
        if not flight.ended:
            if flight.stop_deadline is not None and time.monotonic() > flight.stop_deadline:
                assert flight.stop_reason is not None
                log.warning("attempt %s: Slurm job %s did not end when cancelled", flight.job.attempt_id, flight.job_id)
                return stopped(flight.stop_reason)
            return None
        outcome = self._outcome(flight)
        if outcome is not None and outcome.status == AttemptStatus.SUCCEEDED:
            return outcome  # it finished before any stop took effect
        exit_code = outcome.exit_code if outcome is not None else None
        if flight.stop_reason is not None:
            # Slurm signals every process of the job, the model too: a model that died of our
            # SIGTERM before `modelrunner exec` could say why it was stopped has not failed.
            return stopped(flight.stop_reason, exit_code)
        job = f"Slurm job {flight.job_id}"
        state = flight.state
        if outcome is not None and outcome.status not in _STOPPED and state not in _ENDED_BY_SLURM:
            return outcome  # the model ended by itself
        if state in ("TIMEOUT", "DEADLINE"):
            return Outcome(AttemptStatus.TIMED_OUT, exit_code, f"{job} reached its time limit ({state})")
        if state == "PREEMPTED":
            return Outcome(AttemptStatus.PREEMPTED, exit_code, f"{job} was preempted")
        if state in ("NODE_FAIL", "BOOT_FAIL"):
            return Outcome(AttemptStatus.LOST, exit_code, f"{job} ended as its node failed ({state})")
        if state == "CANCELLED":
            message = f"{job} was cancelled outside modelrunner (scancel, or by an administrator)"
            return Outcome(AttemptStatus.LOST, exit_code, message)
        if outcome is not None:
            return outcome
        if state == _FORGOTTEN:
            return Outcome(AttemptStatus.LOST, None, f"{job} is no longer known to Slurm and left no outcome")
        detail = f"{job} ended {state} (exit code {flight.exit_code or 'unknown'}) without an outcome"
        said = self._slurm_output_tail(flight)
        return Outcome(AttemptStatus.FAILED, exit_code, f"{detail}; its output ends: {said}" if said else detail)

    def _ran(self, flight: _Flight) -> bool:
        """Whether the job's script runs or ran (rather than ending while it waited)."""
        if flight.state in _WAITING or flight.state == _FORGOTTEN:
            return False
        return not flight.ended or flight.exit_code not in (None, "0:0") or self._has_outcome(flight)

    def _outcome(self, flight: _Flight) -> Outcome | None:
        job = flight.job
        try:
            data = self._artifacts.get_bytes(self._artifacts.uri(outcome_key(job.run_id, job.attempt_number)))
            return outcome_from_dict(json.loads(data))
        except FileNotFoundError:
            return None
        except Exception as exc:
            log.warning("attempt %s: its outcome could not be read: %s", job.attempt_id, exc)
            return None

    def _has_outcome(self, flight: _Flight) -> bool:
        key = outcome_key(flight.job.run_id, flight.job.attempt_number)
        try:
            return self._artifacts.exists(key)
        except Exception:
            return False

    def _fetch_log(self, flight: _Flight) -> None:
        job = flight.job
        destination = self._logs.path(job.run_id, job.attempt_number)
        uri = self._artifacts.uri(log_key(job.run_id, job.attempt_number))
        try:
            self._artifacts.get_file(uri, destination)
            return
        except FileNotFoundError:
            pass  # stopped before it ran, or modelrunner exec could not start: Slurm's output says why
        except Exception as exc:  # the attempt's ending matters more than its log
            log.warning("attempt %s: its log could not be fetched from %s: %s", job.attempt_id, uri, exc)
            return
        output = self._workdir / f"slurm-{flight.job_id}.out"
        with contextlib.suppress(OSError):
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(output.read_bytes())

    def _slurm_output_tail(self, flight: _Flight) -> str:
        try:
            text = (self._workdir / f"slurm-{flight.job_id}.out").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        lines = [line for line in text.splitlines() if line.strip()]
        return " / ".join(lines[-3:])[-500:]

    # --- the watcher ----------------------------------------------------------------------------

    def _watch(self) -> None:
        """Start the watcher thread unless it runs."""
        with self._lock:
            if self._closing.is_set() or (self._watcher is not None and self._watcher.is_alive()):
                return
            self._watcher = threading.Thread(target=self._watch_loop, name=f"slurm-{self.name}", daemon=True)
            self._watcher.start()

    def _watch_loop(self) -> None:
        next_idle_check = 0.0
        while not self._closing.is_set():
            wait = _CHECK_SECONDS
            try:
                self._stop_pending()
                with self._lock:
                    in_flight = [f for f in self._flights.values() if not f.ended]
                if in_flight:
                    self._check_jobs(in_flight)
                    self._set_problem(None)
                elif time.monotonic() >= next_idle_check or self._problem is not None or not self._checked:
                    self._set_problem(self._controller_problem())
                    next_idle_check = time.monotonic() + _IDLE_CHECK_SECONDS
            except SlurmUnavailable as exc:
                self._set_problem(exc.message)
            except Exception:  # the watcher must outlive any single failure
                log.exception("backend %s: checking on Slurm failed", self.name)
            if self._problem is not None:
                wait = _RETRY_SECONDS
            self._poke.wait(wait)
            self._poke.clear()

    def _check_jobs(self, flights: list[_Flight]) -> None:
        ids = [f.job_id for f in flights]
        states = self._squeue(ids)
        missing = [job_id for job_id in ids if job_id not in states]
        if missing:
            states |= self._sacct(missing)
        changed = False
        for flight in flights:
            state, exit_code = states.get(flight.job_id, (None, None))
            if state is not None and state not in _ACTIVE and exit_code is None:
                exit_code = self._exit_code(flight.job_id)
            with self._lock:
                if state is None:
                    flight.misses += 1
                    state = _FORGOTTEN if flight.misses >= _FORGOTTEN_AFTER else flight.state
                else:
                    flight.misses = 0
                if state != flight.state:
                    log.debug("attempt %s: Slurm job %s %s", flight.job.attempt_id, flight.job_id, state)
                    flight.state, flight.exit_code = state, exit_code
                    changed = True
        if changed:
            self._wake()

    def _squeue(self, job_ids: list[str]) -> dict[str, tuple[str, str | None]]:
        """The state of each job the controller still knows (ended ones for ``MinJobAge``)."""
        done = self._slurm(
            ["squeue", f"--jobs={','.join(job_ids)}", "--states=all", "--noheader", "--format=%i|%T"], _QUERY_SECONDS
        )
        if done.returncode != 0:
            if "invalid job id" in done.stderr.lower():
                return {}  # none of them is known any more
            raise SlurmUnavailable(f"squeue failed: {_said(done)}")
        states: dict[str, tuple[str, str | None]] = {}
        for line in done.stdout.splitlines():
            job_id, _, state = line.strip().partition("|")
            if job_id:
                states[job_id] = (state.split()[0] if state else "UNKNOWN", None)
        return states

    def _sacct(self, job_ids: list[str]) -> dict[str, tuple[str, str | None]]:
        """What accounting says of jobs the controller forgot; nothing without accounting."""
        done = self._slurm(
            ["sacct", f"--jobs={','.join(job_ids)}", "--parsable2", "--noheader", "--format=JobID,State,ExitCode"],
            _QUERY_SECONDS,
        )
        states: dict[str, tuple[str, str | None]] = {}
        if done.returncode != 0:
            return states  # accounting disabled (no slurmdbd): the job counts as gone after a few checks
        for line in done.stdout.splitlines():
            fields = line.strip().split("|")
            if len(fields) == 3 and fields[0] in job_ids:  # the job itself, not its steps (id.batch)
                states[fields[0]] = (fields[1].split()[0] if fields[1] else "UNKNOWN", fields[2] or None)
        return states

    def _exit_code(self, job_id: str) -> str | None:
        """Slurm's ``code:signal`` of an ended job, from ``scontrol show job``."""
        with contextlib.suppress(SlurmUnavailable):
            done = self._slurm(["scontrol", "show", "job", "--oneliner", job_id], _QUERY_SECONDS)
            found = re.search(r"\bExitCode=(\d+:\d+)", done.stdout)
            return found.group(1) if found else None
        return None

    def _stop_pending(self) -> None:
        with self._lock:
            pending = list(self._to_stop)
        for target in pending:
            if self._scancel(target):
                with self._lock:
                    self._to_stop.discard(target)

    def _scancel(self, target: str) -> bool:
        """``scancel <target>`` (a job id, or options naming the job); whether the controller
        took it (also for a job that has ended already)."""
        try:
            done = self._slurm(["scancel", *target.split()], _SUBMIT_SECONDS)
        except SlurmUnavailable as exc:
            log.warning("backend %s: could not cancel Slurm job %s yet: %s", self.name, target, exc.message)
            return False
        if done.returncode == 0 or "invalid job id" in done.stderr.lower() or "already complet" in done.stderr.lower():
            log.info("backend %s: cancelled Slurm job %s", self.name, target)
            return True
        log.warning("backend %s: scancel %s failed: %s", self.name, target, _said(done))
        return False

    # --- the controller -------------------------------------------------------------------------

    def _controller_problem(self) -> str | None:
        """None when ``sinfo`` answers and lists the partition; else what is wrong."""
        command = ["sinfo", "--noheader", "--format=%P|%a"]
        if self._config.partition:
            command.append(f"--partition={self._config.partition}")
        try:
            done = self._slurm(command, _HEALTH_SECONDS)
        except SlurmUnavailable as exc:
            return exc.message
        if done.returncode != 0:
            return f"the Slurm controller does not answer: {_said(done)}"
        if self._config.partition and not done.stdout.strip():
            return f"Slurm has no partition {self._config.partition!r} (see `sinfo`)"
        return None

    def _set_problem(self, problem: str | None) -> None:
        now = time.monotonic()
        with self._lock:
            was, self._problem = self._problem, problem
            first = not self._checked and problem is None
            if problem is None:
                self._checked = True
            report = problem is not None and now >= self._next_unreachable_log
            if report:
                self._next_unreachable_log = now + _UNREACHABLE_LOG_SECONDS
        if report:
            log.warning("backend %s: %s; its runs stay queued until Slurm answers", self.name, problem)
        elif was is not None and problem is None:
            log.info("backend %s: Slurm answers again", self.name)
        if first or (was is not None and problem is None):
            self._wake()  # there is room for queued runs now

    def _slurm(self, command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command; SlurmUnavailable when it is missing or takes too long."""
        # The server's own settings (a database URL, secrets) are none of the job's business.
        env = {key: value for key, value in os.environ.items() if not key.startswith("MODELRUNNER_")}
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, check=False)
        except FileNotFoundError as exc:
            raise SlurmUnavailable(f"{command[0]} is not installed on the server (Slurm's client commands)") from exc
        except subprocess.TimeoutExpired as exc:
            raise SlurmUnavailable(f"the Slurm controller did not answer {command[0]} within {timeout:g}s") from exc
        except OSError as exc:
            raise SlurmUnavailable(f"{command[0]} could not be run: {exc}") from exc


def slurm_memory(memory: str) -> str:
    """``512Mi``, ``4Gi``, ``2G`` as sbatch ``--mem`` (whole MiB, rounded up); ModelrunnerError
    for a value without a unit."""
    found = _MEMORY.match(memory)
    if found is None:
        raise ModelrunnerError(f"memory {memory!r} is not an amount like 512Mi or 4Gi")
    amount = float(found.group(1)) * _MEMORY_FACTORS[found.group(2)]
    return f"{max(1, math.ceil(amount / 2**20))}M"


def slurm_minutes(seconds: float) -> int:
    """A time limit for sbatch ``--time``: whole minutes, at least one."""
    return max(1, math.ceil(seconds / 60))


def _said(done: subprocess.CompletedProcess[str]) -> str:
    text = (done.stderr or done.stdout).strip()
    return text.splitlines()[-1][:500] if text else f"exit status {done.returncode}"
