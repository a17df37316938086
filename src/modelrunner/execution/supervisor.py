"""The supervisors of attempts: the processes between the runner and the models' commands.

A runner starts this file once, as its supervisor service (``python -I -S supervisor.py
PARENT SOCKET``): standard library only, reading nothing of the environment's Python settings.
For each attempt the runner sends it a request on SOCKET (the command, its environment, folder
and user, and two pipes: the model's output and the attempt's reports), and the service forks a
supervisor for it, which costs a fork, not a Python start. Each supervisor:

- is a child subreaper, so whatever the model starts, even a daemon that double-forks and calls
  ``setsid()``, stays its descendant and is found when the attempt ends;
- dies with the service (``PR_SET_PDEATHSIG``), as the service dies with its runner: a runner
  that is killed takes its models with it;
- starts the command in a session of its own, as another user when told to (it runs as the
  runner's user, so a model running as another user can neither signal nor read it; like the
  service, it is not dumpable, so a model of its own user cannot read its memory either);
- on SIGTERM (cancel, timeout, preemption) passes SIGTERM to every descendant and SIGKILLs what
  is left after the grace period; once the command has exited, does the same to what it left.

A supervisor reports on its attempt's pipe, a line each: ``supervisor PID``, then ``started PID``
or ``failed MESSAGE``, then ``exit RETURNCODE`` (negative: the signal that ended the command, as
``subprocess`` says it).
"""

# `_signal` rather than `signal`: the wrapper imports enum, which would double this start's cost.
import _signal
import ctypes
import os
import socket
import sys

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36
_KILL_REPEAT = 0.1  # after the grace period, SIGKILL again this often: a fork may race the kill
_REQUEST_BYTES = 1 << 20  # a command and its environment


class Supervisor:
    def __init__(
        self,
        parent: int,
        grace: float,
        user: tuple[int, int] | None,
        control: int,
        command: list[str],
        environment: dict[str, str],
    ) -> None:
        self.parent = parent
        self.grace = grace
        self.user = user  # (uid, gid); None: the runner's own user
        self.control = control
        self.command = command
        self.environment = environment
        self.child = 0
        self.stopping = False
        self._pid = os.getpid()
        self._prctl = ctypes.CDLL(None, use_errno=True).prctl

    def run(self) -> int:
        self._prctl(_PR_SET_CHILD_SUBREAPER, 1)
        self._prctl(_PR_SET_PDEATHSIG, _signal.SIGTERM)
        if os.getppid() != self.parent:  # the service died before the line above took effect
            return 1
        self._report(f"supervisor {self._pid}")
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
            _exec(self.command, self.environment)
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
        if os.getppid() != self.parent:  # the service (so the runner) died: nobody waits for the grace
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


def _exec(command: list[str], environment: dict[str, str]) -> None:
    """``os.execvpe`` with the model's PATH, without its lazy import of ``warnings``."""
    if os.sep in command[0]:
        os.execve(command[0], command, environment)
    failure: OSError = FileNotFoundError(2, "No such file or directory")
    for folder in environment.get("PATH", os.defpath).split(os.pathsep):
        try:
            os.execve(os.path.join(folder, command[0]), command, environment)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:  # not executable here: say so unless a later folder has it
            failure = exc
    raise failure


def serve(parent: int, channel: socket.socket) -> None:
    """The service: fork a supervisor for each request until the runner closes ``channel``."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl(_PR_SET_PDEATHSIG, _signal.SIGKILL)  # its supervisors, losing it, kill their models
    # Its memory holds every attempt's request (their callback tokens): no model may read it.
    prctl(_PR_SET_DUMPABLE, 0)
    if os.getppid() != parent:
        return
    _signal.signal(_signal.SIGCHLD, _signal.SIG_IGN)  # the kernel reaps the supervisors
    while True:
        request, descriptors, _, _ = socket.recv_fds(channel, _REQUEST_BYTES, 2)
        if not request:
            return
        if os.fork() == 0:
            channel.close()
            _signal.signal(_signal.SIGCHLD, _signal.SIG_DFL)  # a supervisor waits for its own
            os._exit(_supervise(request, descriptors, parent=os.getppid()))
        for descriptor in descriptors:
            os.close(descriptor)


def _supervise(request: bytes, descriptors: list[int], parent: int) -> int:
    """In a supervisor just forked: read its request, then run the attempt."""
    output, control = descriptors
    grace, uid, gid, folder, count, *rest = request.decode("utf-8", "surrogateescape").split("\0")
    command, variables = rest[: int(count)], rest[int(count) :]
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(output)
    try:
        os.chdir(folder)
    except OSError as exc:
        os.write(control, f"failed cannot enter {folder}: {exc.strerror}\n".encode())
        return 1
    user = None if uid == "-" else (int(uid), int(gid))
    environment = dict(variable.split("=", 1) for variable in variables)
    return Supervisor(parent, float(grace), user, control, command, environment).run()


def request(
    grace: float, user: tuple[int, int] | None, folder: str, command: list[str], environment: dict[str, str]
) -> bytes:
    """What the runner sends the service for one attempt (with the two pipes' write ends)."""
    uid, gid = ("-", "-") if user is None else (str(user[0]), str(user[1]))
    variables = [f"{name}={value}" for name, value in environment.items()]
    fields = [str(grace), uid, gid, folder, str(len(command)), *command, *variables]
    return "\0".join(fields).encode("utf-8", "surrogateescape")


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: supervisor.py PARENT SOCKET; started by modelrunner, not by hand")
    serve(int(sys.argv[1]), socket.socket(fileno=int(sys.argv[2])))


if __name__ == "__main__":
    main()
