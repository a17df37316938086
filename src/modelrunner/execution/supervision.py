"""The runner's side of the supervisor service (``supervisor.py``): one process per runner,
started at the first attempt from a thread that lives as long as it does (a process dies with the
thread that started it, not with the runner), and asked for one supervised attempt at a time."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

from modelrunner.execution import supervisor
from modelrunner.execution.confinement import ModelUser

SUPERVISOR = supervisor.__file__


class SupervisorService:
    """Starts attempts under supervisors forked by one service process; safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._channel: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def launch(
        self, command: list[str], environment: dict[str, str], folder: str, grace: float, user: ModelUser | None
    ) -> tuple[int, int]:
        """Start ``command`` in ``folder`` under a new supervisor: the read ends of its output (the
        model's stdout and stderr) and of its reports. OSError when the service cannot be started."""
        ids = None if user is None else (user.uid, user.gid)
        message = supervisor.request(grace, ids, folder, command, environment)
        output_read, output_write = os.pipe()
        control_read, control_write = os.pipe()
        try:
            with self._lock:
                try:
                    socket.send_fds(self._running(), [message], [output_write, control_write])
                except (BrokenPipeError, ConnectionResetError):  # the service died: start another
                    self._stop()
                    socket.send_fds(self._running(), [message], [output_write, control_write])
        except BaseException:
            os.close(output_read)
            os.close(control_read)
            raise
        finally:
            os.close(output_write)
            os.close(control_write)
        return output_read, control_read

    def close(self) -> None:
        """Stop the service (it ends when its channel closes). Call it once no attempt runs: the
        supervisors of any still running die with it, and kill their models."""
        with self._lock:
            self._stop()

    def _running(self) -> socket.socket:
        if self._channel is not None and self._process is not None and self._process.poll() is None:
            return self._channel
        self._stop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        started: list[subprocess.Popen[bytes] | OSError] = []
        ready = threading.Event()

        def keep() -> None:
            try:
                process = subprocess.Popen(
                    [sys.executable, "-I", "-S", SUPERVISOR, str(os.getpid()), str(theirs.fileno())],
                    pass_fds=(theirs.fileno(),),
                    env={},  # nothing of the runner's environment: a model of its user could read it
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    start_new_session=True,
                )
            except OSError as exc:
                started.append(exc)
                ready.set()
                return
            started.append(process)
            ready.set()
            process.wait()

        threading.Thread(target=keep, name="supervisor-service", daemon=True).start()
        ready.wait()
        theirs.close()
        if isinstance(started[0], OSError):
            ours.close()
            raise started[0]
        self._process, self._channel = started[0], ours
        return ours

    def _stop(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = None
        self._process = None
