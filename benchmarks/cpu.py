"""CPU time of a server or a Celery worker: the process itself and the long-lived helper
processes it keeps (a supervisor service, a pool), not the commands they run.

What short-lived children spend (the models, per-attempt supervisors) is not counted: the
supervisor service lets the kernel reap its children, which discards their times."""

from __future__ import annotations

from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class TreeCpu:
    """User + system seconds of each live process of a tree, as seen at one instant."""

    own: dict[tuple[int, float], float]  # by (pid, create time)
    root: tuple[int, float]

    def spent_since(self, before: TreeCpu) -> Spent:
        """What the tree's processes spent between ``before`` and this instant. Measure while
        no command runs: a process alive at only one of the two instants counts only its time
        up to the second (or nothing, if it ended before it)."""
        spent = {key: seconds - before.own.get(key, 0.0) for key, seconds in self.own.items()}
        root = spent.pop(self.root, 0.0)
        return Spent(root=root, helpers=sum(spent.values()))


@dataclass(frozen=True)
class Spent:
    root: float  # the process itself (the server, the Celery worker's main process)
    helpers: float  # its live descendants (the supervisor service; the worker's pool processes)

    @property
    def total(self) -> float:
        return self.root + self.helpers


def tree_cpu(pid: int) -> TreeCpu:
    root = psutil.Process(pid)
    own: dict[tuple[int, float], float] = {}
    for process in [root, *root.children(recursive=True)]:
        try:
            with process.oneshot():
                times = process.cpu_times()
                own[(process.pid, process.create_time())] = times.user + times.system
        except psutil.NoSuchProcess:
            continue  # ended meanwhile
    return TreeCpu(own=own, root=(root.pid, root.create_time()))
