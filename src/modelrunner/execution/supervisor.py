"""The supervisor of one attempt: the process between the runner and the model's command.

It is started as ``python -I -S supervisor.py PARENT GRACE UID GID CONTROL COMMAND...`` (UID and
GID ``-`` for the runner's own user) and imports only what Python has loaded at start and ctypes,
so it costs a few milliseconds a run and reads nothing of the environment's Python settings. It:

- becomes a child subreaper, so whatever the model starts, even a daemon that double-forks and
  calls ``setsid()``, stays its descendant and is found when the attempt ends;
- dies with its runner (``PR_SET_PDEATHSIG``): a runner that is killed takes the model with it;
- starts the command in a session of its own, as another user when told to (it runs as the
  runner's user, so a model running as another user can neither signal nor read it);
- on SIGTERM (cancel, timeout, preemption) passes SIGTERM to every descendant and SIGKILLs what
  is left after the grace period; once the command has exited, does the same to what it left.

It reports on the pipe whose descriptor is CONTROL, a line each: ``started PID`` or ``failed
MESSAGE``, then ``exit RETURNCODE`` (negative: the signal that ended the command, as
``subprocess`` says it).
"""

# `_signal` rather than `signal`: the wrapper imports enum, which would double this start's cost.
import _signal
import ctypes
import os
import sys

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_KILL_REPEAT = 0.1  # after the grace period, SIGKILL again this often: a fork may race the kill


class Supervisor:
    def __init__(
        self, parent: int, grace: float, user: tuple[int, int] | None, control: int, command: list[str]
    ) -> None:
        self.parent = parent
        self.grace = grace
        self.user = user  # (uid, gid); None: the runner's own user
        self.control = control
        self.command = command
        self.child = 0
        self.stopping = False
        self._pid = os.getpid()
        self._prctl = ctypes.CDLL(None, use_errno=True).prctl

    def run(self) -> int:
        self._prctl(_PR_SET_CHILD_SUBREAPER, 1)
        self._prctl(_PR_SET_PDEATHSIG, _signal.SIGTERM)
        if os.getppid() != self.parent:  # the runner died before the line above took effect
            return 1
        _signal.signal(_signal.SIGTERM, self._on_sigterm)
        _signal.signal(_signal.SIGALRM, self._on_alarm)
        if not self._start():
            return 1
        if self.stopping:  # asked to stop while the command was starting
            self._signal_all(_signal.SIGTERM)
        returncode = self._wait()
        self._report(f"exit {returncode}")
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
            self._report(f"failed {message}")
            return False
        self.child = pid
        self._report(f"started {pid}")
        return True

    def _become_model(self, errors: int) -> None:
        """In the forked child: drop to the model's user and exec the command; never returns."""
        try:
            for signum in (_signal.SIGTERM, _signal.SIGALRM):
                _signal.signal(signum, _signal.SIG_DFL)
            os.setsid()
            if self.user is not None:
                os.setgroups([])
                os.setgid(self.user[1])
                os.setuid(self.user[0])
            # After setuid: a change of user clears the parent-death signal.
            self._prctl(_PR_SET_PDEATHSIG, _signal.SIGKILL)
            if os.getppid() != self._pid:
                os._exit(1)
            _exec(self.command)
        except OSError as exc:
            os.write(errors, (exc.strerror or str(exc)).encode())
        except BaseException as exc:  # whatever happens, this child must not return into the supervisor
            os.write(errors, repr(exc).encode())
        os._exit(127)

    def _wait(self) -> int:
        """Reap every descendant; the command's return code once nothing is left."""
        returncode: int = -_signal.SIGKILL
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
            self._signal_all(_signal.SIGKILL)
            _signal.setitimer(_signal.ITIMER_REAL, _KILL_REPEAT, _KILL_REPEAT)
            return
        self._stop()

    def _stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self._signal_all(_signal.SIGTERM)
        _signal.setitimer(_signal.ITIMER_REAL, max(self.grace, 0.001), _KILL_REPEAT)

    def _on_alarm(self, _signum: int, _frame: object) -> None:
        self._signal_all(_signal.SIGKILL)

    def _signal_all(self, signum: int) -> None:
        targets = [-self.child] if self.child else []  # the command's process group
        for pid in [*targets, *self._descendants()]:
            try:  # noqa: SIM105 (contextlib would cost this start an import)
                os.kill(pid, signum)
            except (ProcessLookupError, PermissionError):
                pass  # ended meanwhile

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

    def _report(self, line: str) -> None:
        try:  # noqa: SIM105 (as above)
            os.write(self.control, f"{line}\n".encode())
        except OSError:
            pass  # the runner is gone; the attempt ends all the same


def _exec(command: list[str]) -> None:
    """``os.execvpe`` with this environment's PATH, without its lazy import of ``warnings``."""
    if os.sep in command[0]:
        os.execv(command[0], command)
    failure: OSError = FileNotFoundError(2, "No such file or directory")
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        try:
            os.execv(os.path.join(folder, command[0]), command)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:  # not executable here: say so unless a later folder has it
            failure = exc
    raise failure


def main() -> None:
    if len(sys.argv) < 7:
        sys.exit("usage: supervisor.py PARENT GRACE UID GID CONTROL COMMAND...; started by modelrunner, not by hand")
    parent, grace, uid, gid, control, *command = sys.argv[1:]
    user = None if uid == "-" else (int(uid), int(gid))
    sys.exit(Supervisor(int(parent), float(grace), user, int(control), command).run())


if __name__ == "__main__":
    main()
