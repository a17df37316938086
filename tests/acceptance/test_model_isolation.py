"""A model is untrusted code: against a real ``modelrunner serve``, it finds none of the server's
secrets, nothing it starts outlives its attempt, and it dies with a killed server."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from modelrunner.settings import Settings
from tests.conftest import Server, wait_for_run
from tests.integration.runs_api import process_gone, wait_until

SESSION_CANARY = "session-secret-canary-5f1c"
SMTP_CANARY = "smtp-password-canary-9e2a"
CLOUD_CANARY = "cloud-key-canary-77d0"
CANARIES = (SESSION_CANARY, SMTP_CANARY, CLOUD_CANARY)
FILE_CANARY = "file-canary-31b8"

# A model that double-forks a daemon which calls setsid() and ignores SIGTERM, as a model that
# wants to outlive its run would; the daemon writes its pid to `pidfile`.
DAEMONIZER = """\
import json
import os
import signal
import sys
import time
from pathlib import Path

params = json.loads(Path(os.environ["MODELRUNNER_PARAMS"]).read_text())
pidfile = Path(params["pidfile"])
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pidfile.write_text(f"{os.getpid()}\\n")
        time.sleep(600)
    os._exit(0)
os.wait()
while not pidfile.exists():
    time.sleep(0.02)
Path(os.environ["MODELRUNNER_OUTPUTS"], "env.json").write_text(json.dumps(dict(os.environ)))
print("::progress:: 0.5 daemon started", flush=True)
time.sleep(params["seconds"])
"""

# A model that looks for the server's secrets everywhere a process of its user can look: every
# readable /proc/*/environ and cmdline, and the files of the server's state folder.
SNOOP = """\
#!/bin/sh
out="$MODELRUNNER_OUTPUTS"
id > "$out/id.txt"
env > "$out/env.txt"
for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do
  cat "$f" 2>/dev/null | tr '\\0' '\\n' >> "$out/proc.txt"
done
for f in left-by-an-older-version.txt secrets.key modelrunner.db; do
  echo "== $f" >> "$out/files.txt"
  cat "{state}/$f" >> "$out/files.txt" 2>&1
done
exit 0
"""


def _write_model(workspace: Path, name: str, files: dict[str, str], spec: str) -> None:
    folder = workspace / name
    folder.mkdir()
    for file_name, content in files.items():
        (folder / file_name).write_text(content)
        (folder / file_name).chmod(0o755)
    (folder / "model.yaml").write_text(textwrap.dedent(spec))


@pytest.fixture
def server_env(settings: Settings) -> dict[str, str]:
    """The server's environment, holding secrets of every kind a server has: its own settings, a
    password the workspace names, a cloud credential of the machine."""
    workspace = settings.workspace
    _write_model(
        workspace,
        "daemonizer",
        {"daemonizer.py": DAEMONIZER},
        """\
        name: daemonizer
        command: [python, daemonizer.py]
        params:
          type: object
          properties: {pidfile: {type: string}, seconds: {type: number}}
          required: [pidfile, seconds]
        """,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELRUNNER_")}
    env.update(
        MODELRUNNER_WORKSPACE=str(workspace),
        MODELRUNNER_DATA_DIR=str(settings.state_dir),
        MODELRUNNER_DATABASE_URL=settings.resolved_database_url,
        MODELRUNNER_LOCAL_SLOTS="2",
        MODELRUNNER_GRACE_SECONDS="1",
        MODELRUNNER_POLL_SECONDS="0.2",
        MODELRUNNER_SESSION_SECRET=SESSION_CANARY,
        MR_TEST_SMTP_PASSWORD=SMTP_CANARY,
        AWS_SECRET_ACCESS_KEY=CLOUD_CANARY,
        MR_TEST_PASSED=" passed-by-the-workspace",
    )
    return env


def _configure(workspace: Path, local: str) -> None:
    (workspace / "modelrunner.yaml").write_text(
        textwrap.dedent(
            f"""\
            name: isolation
            backends:
              local: {local}
            model_environment: [MR_TEST_PASSED]
            notifications:
              email: {{host: 127.0.0.1, sender: mr@example.org, username: mailer, password_env: MR_TEST_SMTP_PASSWORD}}
            """
        )
    )


def _pid_in(pidfile: Path) -> int:
    wait_until(lambda: pidfile.exists() and pidfile.read_text().endswith("\n"), 30, "the daemon to start")
    return int(pidfile.read_text())


def _submit(http: httpx.Client, model: str, params: dict[str, object]) -> int:
    response = http.post(f"/api/v1/models/{model}/runs", json={"params": params})
    assert response.status_code == 201, response.text
    run_id: int = response.json()["id"]
    return run_id


def _outputs(http: httpx.Client, run_id: int) -> dict[str, str]:
    listed = http.get(f"/api/v1/runs/{run_id}/outputs").json()
    return {o["path"]: http.get(f"/api/v1/runs/{run_id}/outputs/{o['path']}").text for o in listed}


@pytest.mark.skipif(os.geteuid() != 0, reason="running models as another user needs a server running as root")
def test_a_model_run_as_another_user_finds_none_of_the_servers_secrets(
    server_env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    # The state folder where the model user can reach its scratch folder (pytest's tmp_path is
    # under a folder only root may enter).
    state = Path(tempfile.mkdtemp(prefix="modelrunner-isolation-"))
    state.chmod(0o711)
    # A file readable by all, as servers before this one left their files.
    (state / "left-by-an-older-version.txt").write_text(FILE_CANARY)
    (state / "left-by-an-older-version.txt").chmod(0o644)
    _configure(settings.workspace, "{type: local, run_as: nobody, allow_root: false}")
    _write_model(
        settings.workspace,
        "snoop",
        {"snoop.sh": SNOOP.format(state=state)},
        """\
        name: snoop
        command: [./snoop.sh]
        """,
    )
    server = Server({**server_env, "MODELRUNNER_DATA_DIR": str(state)}, tmp_path / "server.log")
    server.start()
    try:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
            run = wait_for_run(http.get, _submit(http, "snoop", {}))
            assert run["status"] == "succeeded", run
            outputs = _outputs(http, run["id"])
    finally:
        server.stop()
        shutil.rmtree(state, ignore_errors=True)
    nobody = pwd.getpwnam("nobody")
    assert f"uid={nobody.pw_uid}(nobody)" in outputs["id.txt"]
    assert "MR_TEST_PASSED= passed-by-the-workspace" in outputs["env.txt"]
    # It did look: its own and other readable processes' environments, and the state folder.
    assert "MODELRUNNER_RUN_ID=" in outputs["proc.txt"]
    assert "older-version.txt" in outputs["files.txt"] and "Permission denied" in outputs["files.txt"]
    for secret in (*CANARIES, FILE_CANARY):
        for name, content in outputs.items():
            assert secret not in content, f"{name} holds a secret of the server's"


def test_a_models_environment_holds_only_what_is_allowed(server: Server, settings: Settings, tmp_path: Path) -> None:
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
        run = wait_for_run(http.get, _submit(http, "daemonizer", {"pidfile": str(tmp_path / "d.pid"), "seconds": 0}))
        environment = json.loads(_outputs(http, run["id"])["env.json"])
    assert run["status"] == "succeeded", run
    contract = {name for name in environment if name.startswith("MODELRUNNER_")}
    assert contract == {
        "MODELRUNNER_RUN_ID",
        "MODELRUNNER_ATTEMPT",
        "MODELRUNNER_PARAMS",
        "MODELRUNNER_INPUTS",
        "MODELRUNNER_OUTPUTS",
        "MODELRUNNER_CHECKPOINT",
        "MODELRUNNER_FAILURE_NOTE",  # where it may say why it failed (a file of its scratch folder)
        # Its progress may go over HTTP too; the token opens this attempt's reports only.
        "MODELRUNNER_CALLBACK_URL",
        "MODELRUNNER_CALLBACK_TOKEN",
    }
    others = {name for name in environment if not name.startswith(("MODELRUNNER_", "LC_"))}
    assert others <= {"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR", "PYTHONUNBUFFERED"}
    assert not any(secret in json.dumps(environment) for secret in CANARIES)


def test_a_daemon_a_model_leaves_behind_is_stopped_when_its_run_ends(server: Server, tmp_path: Path) -> None:
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
        finished = _submit(http, "daemonizer", {"pidfile": str(tmp_path / "done.pid"), "seconds": 0})
        daemon = _pid_in(tmp_path / "done.pid")
        run = wait_for_run(http.get, finished)
        log = http.get(f"/api/v1/runs/{finished}/logs").text
        assert process_gone(daemon), "the daemon of a succeeded run must be stopped before the run ends"

        cancelled = _submit(http, "daemonizer", {"pidfile": str(tmp_path / "cancel.pid"), "seconds": 600})
        second = _pid_in(tmp_path / "cancel.pid")
        assert http.post(f"/api/v1/runs/{cancelled}/cancel").status_code in (200, 202)
        stopped = wait_for_run(http.get, cancelled)
    assert run["status"] == "succeeded"
    # It ignores SIGTERM: SIGKILL after the grace period (1 s here) ended it.
    assert "stopping 1 process(es) the model left running" in log
    assert stopped["status"] == "cancelled"
    wait_until(lambda: process_gone(second), 5, "the cancelled run's daemon to stop")


def test_models_die_with_a_killed_server_and_run_again_once(server: Server, tmp_path: Path) -> None:
    pidfile = tmp_path / "killed.pid"
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
        run_id = _submit(http, "daemonizer", {"pidfile": str(pidfile), "seconds": 3})
        daemon = _pid_in(pidfile)
        model = [p for p in psutil.process_iter(["cmdline"]) if "daemonizer.py" in (p.info["cmdline"] or [])]
        server.kill()
        wait_until(lambda: process_gone(daemon), 5, "the daemon to die with the server")
        wait_until(lambda: all(process_gone(p.pid) for p in model), 5, "the model to die with the server")
        pidfile.unlink()

        server.start()
        run = wait_for_run(http.get, run_id, timeout=60)
    assert run["status"] == "succeeded"
    assert [a["status"] for a in run["attempts"]] == ["lost", "succeeded"]


# A runner that, protected or not, starts a child of its own user that reads its environment.
RUNNER = """\
import subprocess, sys
sys.path.insert(0, sys.argv[1])
if sys.argv[2] == "protected":
    from modelrunner.execution.confinement import protect_runner
    protect_runner()
import os
reader = "print(open('/proc/%d/environ', 'rb').read())" % os.getpid()
subprocess.run([sys.executable, "-c", reader], env={})
"""


@pytest.mark.parametrize("protection", ["protected", "unprotected"])
def test_a_process_of_the_runners_own_user_cannot_read_its_environment(tmp_path: Path, protection: str) -> None:
    """The layer that holds where models run as the server's own user: as root (CI), both run as
    `nobody`, with the system's Python, from a copy of the package that user can read."""
    source = Path(__file__).parents[2] / "src"
    if os.geteuid() == 0:
        folder = Path(tempfile.mkdtemp(prefix="modelrunner-dumpable-"))
        folder.chmod(0o755)
        shutil.copytree(source / "modelrunner", folder / "modelrunner", ignore=shutil.ignore_patterns("__pycache__"))
        python, nobody = "/usr/bin/python3", pwd.getpwnam("nobody")
        as_nobody: dict[str, Any] = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
    else:
        folder, python, as_nobody = source, sys.executable, {}
    try:
        result = subprocess.run(
            [python, "-c", RUNNER, str(folder), protection],
            env={"PATH": "/usr/bin:/bin", "RUNNER_SECRET": CLOUD_CANARY},
            capture_output=True,
            text=True,
            **as_nobody,
            timeout=60,
        )
    finally:
        if folder != source:
            shutil.rmtree(folder, ignore_errors=True)
    if protection == "protected":
        assert CLOUD_CANARY not in result.stdout and "Permission denied" in result.stderr, result
    else:  # the same without protection reads it: the check above can fail
        assert CLOUD_CANARY in result.stdout, result
