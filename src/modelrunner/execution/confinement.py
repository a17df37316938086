"""What keeps a model from what the process running it holds: its user, its environment, and a
runner whose memory and environment cannot be read.

The layers, from the outside in: the runner makes itself non-dumpable, so a process of its own
user cannot read ``/proc/<pid>/environ`` or its memory; models run as another, unprivileged user
where one is given (the runner must be root to switch); their environment is built from an
allow-list, never from the runner's own minus a deny-list; and secrets can come from files
(``*_FILE`` variables), so they need not sit in any environment at all.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import stat
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from modelrunner.errors import ModelrunnerError
from modelrunner.spec.names import RESERVED_VARIABLE_PREFIX

# Run models as this user when the server runs as root and the user exists (the platform's
# container image creates it); `local: {run_as: ...}` names another.
DEFAULT_MODEL_USER = "modelrunner-models"

# What a model gets from the runner's environment without anyone asking: enough to find programs,
# to speak the runner's language and time zone, and to use only the devices, threads and Slurm
# allocation its attempt was given; nothing that could hold a credential.
_ALLOWED = frozenset(
    {
        "PATH",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TERM",
        "CUDA_VISIBLE_DEVICES",
        "NVIDIA_VISIBLE_DEVICES",
        "ROCR_VISIBLE_DEVICES",
        "HIP_VISIBLE_DEVICES",
        "OMP_NUM_THREADS",
        # What Slurm says of the allocation (SLURM_JWT, a credential, is not among them).
        "SLURM_JOB_ID",
        "SLURM_JOB_NAME",
        "SLURM_JOB_NODELIST",
        "SLURM_JOB_NUM_NODES",
        "SLURM_JOB_CPUS_PER_NODE",
        "SLURM_CPUS_ON_NODE",
        "SLURM_CPUS_PER_TASK",
        "SLURM_NTASKS",
        "SLURM_MEM_PER_NODE",
        "SLURM_MEM_PER_CPU",
        "SLURM_GPUS_ON_NODE",
        "SLURM_JOB_GPUS",
        "SLURM_PROCID",
        "SLURM_LOCALID",
        "SLURM_NODEID",
    }
)
_ALLOWED_PREFIXES = ("LC_",)

_PR_SET_DUMPABLE = 4


@dataclass(frozen=True)
class ModelUser:
    """The unprivileged user models run as."""

    name: str
    uid: int
    gid: int
    home: str


def model_user(run_as: str | None, allow_root: bool) -> ModelUser | None:
    """Who runs the models of a local backend: ``run_as`` if given; else, when this process is
    root, the default model user if it exists; None means this process's own user. Refuses
    (ModelrunnerError) a ``run_as`` that does not exist or that this process cannot switch to,
    and root when ``allow_root`` is false."""
    if run_as is None:
        user = _lookup(DEFAULT_MODEL_USER) if os.geteuid() == 0 else None
    else:
        user = _lookup(run_as)
        if user is None:
            raise ModelrunnerError(f"run_as: there is no user {run_as!r} on this machine")
        if os.geteuid() != 0 and user.uid != os.geteuid():
            raise ModelrunnerError(f"run_as: only a server running as root can run models as {run_as!r}")
    if not allow_root and (user.uid if user is not None else os.geteuid()) == 0:
        raise ModelrunnerError(
            "models would run as root, which `allow_root: false` forbids: name an unprivileged user in "
            f"`run_as`, or create the user {DEFAULT_MODEL_USER!r}"
        )
    return user if user is not None and user.uid != os.geteuid() else None


def _lookup(name: str) -> ModelUser | None:
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        return None
    return ModelUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def give_to(user: ModelUser, folder: Path) -> None:
    """Make ``folder`` and everything in it the model user's (never following a link)."""
    os.chown(folder, user.uid, user.gid, follow_symlinks=False)
    for root, folders, files in os.walk(folder):
        for name in (*folders, *files):
            os.chown(os.path.join(root, name), user.uid, user.gid, follow_symlinks=False)


def confine_state_folder(state_dir: Path, user: ModelUser, open_folders: Iterable[str]) -> None:
    """Let ``user`` pass through ``state_dir`` into ``open_folders`` (where its scratch and
    checkpoint folders are), without listing anything, and close everything else in it to other
    users (the database, keys, logs and artifacts, also as older versions left them).
    ModelrunnerError when a folder above ``state_dir`` keeps ``user`` out."""
    opened = set(open_folders)
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o711)
    check_reachable(user, state_dir, "the data folder (--data-dir)")
    for name in opened:
        (state_dir / name).mkdir(exist_ok=True)
    for entry in state_dir.iterdir():
        if entry.is_symlink():
            continue
        if entry.name in opened:
            entry.chmod(0o711)
        else:
            entry.chmod(0o700 if entry.is_dir() else 0o600)


def check_reachable(user: ModelUser, folder: Path, named: str) -> None:
    """ModelrunnerError naming the first folder on the way to ``folder`` (itself included) that
    keeps ``user`` out (its scratch folders go below ``folder``, called ``named`` in the message)."""
    real = folder.resolve()
    for above in [*reversed(real.parents), real]:
        if not _passable(above, user):
            raise ModelrunnerError(
                f"models run as {user.name!r} (run_as), who cannot pass through {above} to the scratch folders "
                f"in {folder}: let others through it (chmod o+x {above}) or move {named}"
            )


def can_run(user: ModelUser, program: str) -> bool:
    """Whether ``user`` can reach and execute ``program`` (its symbolic links followed)."""
    real = Path(os.path.realpath(program))
    return all(_passable(folder, user) for folder in [real, *real.parents])


def _passable(folder: Path, user: ModelUser) -> bool:
    status = folder.stat()
    if status.st_uid == user.uid:
        return bool(status.st_mode & stat.S_IXUSR)
    if status.st_gid == user.gid:
        return bool(status.st_mode & stat.S_IXGRP)
    return bool(status.st_mode & stat.S_IXOTH)


def model_environment(
    runner: Mapping[str, str],
    passed: Iterable[str],
    user: ModelUser | None,
    contract: Mapping[str, str],
    profile: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The whole environment of a model: the allow-listed variables of the runner's environment,
    those the workspace passes by name (``model_environment:``), a HOME of the model's user, the
    run's profile variables (MODELRUNNER_PROFILE and the profile's ``env:``, over the runner's),
    and the contract's variables, which nothing overrides."""
    wanted = set(passed)
    env = {
        name: value
        for name, value in runner.items()
        if (name in _ALLOWED or name.startswith(_ALLOWED_PREFIXES) or name in wanted)
        and not name.startswith(RESERVED_VARIABLE_PREFIX)
    }
    if user is not None:
        env.update(HOME=user.home, USER=user.name, LOGNAME=user.name)
    elif "HOME" in runner:
        env["HOME"] = runner["HOME"]
    env.update(profile or {})
    env.update(contract)
    return env


def protect_runner() -> None:
    """Keep this process's memory, environment and files from the models it runs: non-dumpable
    (a process of this user cannot read its memory or ``/proc/<pid>/environ``; Linux only) and
    files it creates readable by its own user only."""
    os.umask(0o077)
    prctl = _prctl()
    if prctl is not None:
        prctl(_PR_SET_DUMPABLE, 0)


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl
