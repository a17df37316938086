"""The supervisor of one attempt: the process between the runner and the model's command.

It is started as ``python -I -S supervisor.py SPEC`` (standard library only, so it starts in a
few milliseconds and reads nothing of the environment's Python settings) and:

- becomes a child subreaper, so whatever the model starts, even a daemon that double-forks and
  calls ``setsid()``, stays its descendant and is found when the attempt ends;
- dies with its runner (``PR_SET_PDEATHSIG``): a runner that is killed takes the model with it;
- starts the command in a session of its own, as another user when told to (it runs as the
  runner's user, so a model running as another user can neither signal nor read it);
- on SIGTERM (cancel, timeout, preemption) passes SIGTERM to every descendant and SIGKILLs what
  is left after the grace period; once the command has exited, does the same to what it left.

It reports on the control pipe whose number SPEC names, one JSON object a line:
``{"started": pid}`` or ``{"failed": message}``, then ``{"exit": returncode}`` (negative: the
signal that ended the command, as ``subprocess`` says it).
"""

import contextlib
import ctypes
import json
import os
import signal
import sys
from typing import Any

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_KILL_REPEAT = 0.1  # after the grace period, SIGKILL again this often: a fork may race the kill


class Supervisor:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.command = [str(word) for word in spec["command"]]
        self.parent = int(spec["parent"])
        self.grace = float(spec["grace"])
        self.user = spec.get("user")  # [uid, gid] or None: the runner's own user
        self.control = int(spec["control"])
        self.child = 0
        self.stopping = False
        self._pid = os.getpid()
        self._prctl = ctypes.CDLL(None, use_errno=True).prctl

    def run(self) -> int:
        self._prctl(_PR_SET_CHILD_SUBREAPER, 1)
        self._prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != self.parent:  # the runner died before the line above took effect
            return 1
        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.signal(signal.SIGALRM, self._on_alarm)
        if not self._start():
            return 1
        if self.stopping:  # asked to stop while the command was starting
            self._signal_all(signal.SIGTERM)
        returncode = self._wait()
        self._report({"exit": returncode})
        return 0

    def _start(self) -> bool:
        errors_read, errors_write = os.pipe()  # close-on-exec: EOF means the exec succeeded
        pid = os.fork()
        if pid == 0:
            os.close(errors_read)
            self._become_model(errors_write)
        os.close(errors_write)
        with os.fdopen(errors_read, "rb") as errors:
            failure = errors.read().decode("utf-8", "replace")
        if failure:
            os.waitpid(pid, 0)
            message = f"cannot start {self.command[0]!r}: {failure}"
            sys.stderr.write(f"modelrunner: {message}\n")
            self._report({"failed": message})
            return False
        self.child = pid
        self._report({"started": pid})
        return True

    def _become_model(self, errors: int) -> None:
        """In the forked child: drop to the model's user and exec the command; never returns."""
        try:
            for signum in (signal.SIGTERM, signal.SIGALRM):
                signal.signal(signum, signal.SIG_DFL)
            os.setsid()
            if self.user is not None:
                uid, gid = int(self.user[0]), int(self.user[1])
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)
            # After setuid: a change of user clears the parent-death signal.
            self._prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != self._pid:
                os._exit(1)
            os.execvpe(self.command[0], self.command, os.environ)
        except OSError as exc:
            os.write(errors, (exc.strerror or str(exc)).encode())
        os._exit(127)

    def _wait(self) -> int:
        """Reap every descendant; the command's return code once nothing is left."""
        returncode = -signal.SIGKILL
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                return returncode
            if pid == self.child:
                returncode = os.waitstatus_to_exitcode(status)
                self._end_leftovers()

    def _end_leftovers(self) -> None:
        """The command has exited: what it left running gets SIGTERM, then SIGKILL after the grace."""
        left = self._descendants()
        if not left:
            return
        sys.stderr.write(f"modelrunner: stopping {len(left)} process(es) the model left running\n")
        self._stop()

    def _on_sigterm(self, _signum: int, _frame: object) -> None:
        if os.getppid() != self.parent:  # the runner died: nobody is left to wait for the grace
            self._signal_all(signal.SIGKILL)
            signal.setitimer(signal.ITIMER_REAL, _KILL_REPEAT, _KILL_REPEAT)
            return
        self._stop()

    def _stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self._signal_all(signal.SIGTERM)
        signal.setitimer(signal.ITIMER_REAL, max(self.grace, 0.001), _KILL_REPEAT)

    def _on_alarm(self, _signum: int, _frame: object) -> None:
        self._signal_all(signal.SIGKILL)

    def _signal_all(self, signum: int) -> None:
        if self.child:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.child, signum)
        for pid in self._descendants():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)

    def _descendants(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != b"Z":  # a zombie is dead already; waitpid reaps it
                children.setdefault(int(fields[1]), []).append(int(entry))
        found: list[int] = []
        frontier = [self._pid]
        while frontier:
            below = children.get(frontier.pop(), [])
            found.extend(below)
            frontier.extend(below)
        return found

    def _report(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):  # the runner is gone; the attempt ends all the same
            os.write(self.control, (json.dumps(message) + "\n").encode())


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: supervisor.py SPEC (JSON); started by modelrunner, not by hand")
    sys.exit(Supervisor(json.loads(sys.argv[1])).run())


if __name__ == "__main__":
    main()
