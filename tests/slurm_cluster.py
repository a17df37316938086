"""A real single-node Slurm cluster for the tests: munged, slurmctld and slurmd of Debian's
``slurm-wlm`` (``slurmctld slurmd slurm-client munge``), started as root with a private
configuration, state and munge socket under a fresh temporary folder.

One node named after this host, no cgroups (``proctrack/linuxproc``, ``task/none``), no
accounting database (``accounting_storage/none``; ended jobs stay visible to ``squeue`` and
``scontrol`` for ``MinJobAge`` seconds). The client commands find the cluster through
``SLURM_CONF``, which :func:`running_cluster` sets in this process's environment while the
cluster runs (so that the backend's ``sbatch``, and the jobs it starts, see it).

Only one such cluster runs on a machine at a time: a lock file serialises test processes
(pytest-xdist workers, or two test runs), each starting its own cluster while it holds it.

Without Slurm installed the tests skip, saying why; with ``MODELRUNNER_TEST_NO_SKIPS=1``
they fail instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port

DAEMONS = ("munged", "slurmctld", "slurmd")
PARTITION = "debug"
LOCK_FILE = Path(tempfile.gettempdir()) / "modelrunner-test-slurm.lock"
PIDS_FILE = LOCK_FILE.with_suffix(".pids")  # the daemons of the cluster running now, if any
_START_SECONDS = 60.0


def missing_programs() -> list[str]:
    """The Slurm and munge programs this machine lacks (the daemons are in /usr/sbin)."""
    path = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"
    programs = (*DAEMONS, "sbatch", "squeue", "scancel", "sinfo")
    return [name for name in programs if shutil.which(name, path=path) is None]


def _program(name: str) -> str:
    found = shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    assert found is not None, name
    return found


class SlurmCluster:
    """munged, slurmctld and slurmd for one node, all under ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.node = socket.gethostname().split(".")[0]
        self.conf = folder / "slurm.conf"
        self.munge_socket = folder / "munge" / "munge.socket"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    # --- configuration --------------------------------------------------------------------------

    def write_configuration(self) -> None:
        for sub in ("munge", "ctld", "spool", "log"):
            (self.folder / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        key = self.folder / "munge" / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o400)
        cpus = os.cpu_count() or 1
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=modelrunner-test",
                    f"SlurmctldHost={self.node}(127.0.0.1)",
                    f"SlurmctldPort={free_port()}",
                    f"SlurmdPort={free_port()}",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={self.munge_socket}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    f"StateSaveLocation={self.folder / 'ctld'}",
                    f"SlurmdSpoolDir={self.folder / 'spool'}",
                    f"SlurmctldPidFile={self.folder / 'slurmctld.pid'}",
                    f"SlurmdPidFile={self.folder / 'slurmd.pid'}",
                    f"SlurmctldLogFile={self.folder / 'log' / 'slurmctld.log'}",
                    f"SlurmdLogFile={self.folder / 'log' / 'slurmd.log'}",
                    "SlurmctldDebug=info",
                    "SlurmdDebug=info",
                    # No cgroups in a container: processes are tracked by their parent pids.
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",
                    "JobCompType=jobcomp/filetxt",
                    f"JobCompLoc={self.folder / 'log' / 'jobcomp.txt'}",
                    "MpiDefault=none",
                    "SwitchType=switch/none",
                    "SchedulerType=sched/backfill",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core_Memory",
                    "DefMemPerCPU=100",  # a job without --mem must not take the whole node
                    "SlurmdParameters=config_overrides",  # the node as written here, whatever it has
                    "ReturnToService=2",
                    "MinJobAge=300",  # ended jobs stay known to squeue/scontrol this long
                    "KillWait=5",  # SIGTERM to SIGKILL when Slurm itself ends a job
                    "SchedulerParameters=sched_interval=1",
                    "SlurmctldTimeout=10",
                    "MessageTimeout=5",
                    f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={_memory_mb()} State=UNKNOWN",
                    f"PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            ),
            encoding="utf-8",
        )

    # --- the daemons ----------------------------------------------------------------------------

    def start(self) -> None:
        self.write_configuration()
        munge = self.folder / "munge"
        self._spawn(
            "munged",
            [
                "--foreground",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={munge / 'munge.key'}",
                f"--pid-file={munge / 'munged.pid'}",
                f"--seed-file={munge / 'munged.seed'}",
                f"--log-file={self.folder / 'log' / 'munged.log'}",
            ],
        )
        _wait(lambda: self.munge_socket.exists(), 15, "munged listens", self)
        self.start_controller()
        self._spawn("slurmd", ["-D"])
        _wait(self.node_idle, _START_SECONDS, f"node {self.node} idle in sinfo", self)

    def start_controller(self) -> None:
        self._spawn("slurmctld", ["-D", "-i"])  # -i: ignore state saved by an earlier controller
        _wait(self.controller_answers, _START_SECONDS, "slurmctld answers", self)

    def stop_controller(self) -> None:
        """Stop slurmctld (its jobs keep running under slurmd); ``start_controller`` restarts it."""
        self._stop("slurmctld")

    def controller_answers(self) -> bool:
        return self.run("scontrol", "ping").returncode == 0

    def node_idle(self) -> bool:
        done = self.run("sinfo", "--noheader", "--nodes", self.node, "--format=%T")
        return done.returncode == 0 and done.stdout.strip() == "idle"

    def run(self, *command: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
        """A Slurm client command against this cluster."""
        return subprocess.run(command, capture_output=True, text=True, env=self.env, timeout=timeout, check=False)

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as a dict (``{}`` once the controller forgot the job)."""
        done = self.run("scontrol", "show", "job", "--oneliner", job_id)
        if done.returncode != 0:
            return {}
        return dict(field.split("=", 1) for field in done.stdout.split() if "=" in field)

    def log_tail(self) -> str:
        parts = []
        for name in DAEMONS:
            path = self.folder / "log" / f"{name}.log"
            if path.exists():
                parts.append(f"--- {name}.log\n{path.read_text(errors='replace')[-2000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.run("scancel", "--full", "--user", str(os.getuid()), timeout=5)
        for name in ("slurmd", "slurmctld", "munged"):
            self._stop(name)

    def _spawn(self, name: str, arguments: list[str]) -> None:
        log = (self.folder / "log" / f"{name}.out").open("ab")
        self._processes[name] = subprocess.Popen(
            [_program(name), *arguments], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        with PIDS_FILE.open("a") as pids:
            pids.write(f"{self._processes[name].pid}\n")

    def _stop(self, name: str) -> None:
        process = self._processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def running_cluster() -> Iterator[SlurmCluster]:
    """A started cluster, with ``SLURM_CONF`` set in this process while it runs; skips the
    test, saying why, when Slurm is not installed."""
    missing = missing_programs()
    if missing:
        reason = (
            f"Slurm is not installed (missing {', '.join(missing)}): "
            "apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge"
        )
        pytest.skip(reason)
    if os.geteuid() != 0:
        reason = "the test Slurm cluster runs its daemons as root"
        pytest.skip(reason)
    with LOCK_FILE.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process's cluster first ends
        _stop_leftovers()
        folder = Path(tempfile.mkdtemp(prefix="mr-slurm-"))  # short: the munge socket path is limited
        cluster = SlurmCluster(folder)
        previous = os.environ.get("SLURM_CONF")
        os.environ["SLURM_CONF"] = str(cluster.conf)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()
            if previous is None:
                os.environ.pop("SLURM_CONF", None)
            else:
                os.environ["SLURM_CONF"] = previous
            PIDS_FILE.unlink(missing_ok=True)
            shutil.rmtree(folder, ignore_errors=True)


def _stop_leftovers() -> None:
    """Kill daemons a test process that was killed itself left running (holding the lock)."""
    try:
        pids = [int(line) for line in PIDS_FILE.read_text().split() if line.isdigit()]
    except OSError:
        pids = []
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() in DAEMONS:
                os.kill(pid, signal.SIGKILL)
    PIDS_FILE.unlink(missing_ok=True)


def _wait(check: object, timeout: float, what: str, cluster: SlurmCluster) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"Slurm test cluster: {what}: not after {timeout}s\n{cluster.log_tail()}")
        time.sleep(0.2)


def _memory_mb() -> int:
    """Most of this machine's memory, in MB (slurmd drains a node that has less than declared)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return max(256, int(line.split()[1]) * 8 // 10 // 1024)
    return 1024
