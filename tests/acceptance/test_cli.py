"""The ``modelrunner`` command line as a user meets it: the real CLI as a subprocess, against a
real ``modelrunner serve`` (the ``server`` fixture) or with no server at all (``--local``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.conftest import FINAL, REPO, TESTS, Server, free_port


def cli(
    *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``modelrunner ARGS``; no output of any command may ever show a traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "modelrunner", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result


def ok(*args: str, env: dict[str, str], cwd: Path | None = None) -> str:
    """Run a command that must succeed; return its stdout."""
    result = cli(*args, env=env, cwd=cwd)
    assert result.returncode == 0, f"{args} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def nowhere(env: dict[str, str]) -> dict[str, str]:
    """``env`` with MODELRUNNER_SERVER pointing at a port where nothing listens."""
    return {**env, "MODELRUNNER_SERVER": f"http://127.0.0.1:{free_port()}"}


def wait_until(server: Server, run_id: int, statuses: set[str], timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    # One client for every poll: httpx.get() builds a client (and a TLS context) each time.
    with httpx.Client(base_url=server.url, headers=server.headers) as http:
        while True:
            run: dict[str, Any] = http.get(f"/api/v1/runs/{run_id}").json()
            if run["status"] in statuses:
                return run
            assert time.monotonic() < deadline, f"run {run_id} still {run['status']}"
            time.sleep(0.05)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_help_describes_the_commands() -> None:
    env = dict(os.environ)
    top = ok("--help", env=env)
    for command in ("serve", "init", "check", "run", "runs", "models", "db"):
        assert command in top
    run_help = ok("run", "--help", env=env)
    for option in ("--param", "--params-file", "--cache", "--max-age", "--wait", "--local", "MODELRUNNER_SERVER"):
        assert option in run_help
    assert "--download" in ok("runs", "outputs", "--help", env=env)


def test_run_wait_then_cache_hit_and_inspecting_runs(server: Server, tmp_path: Path) -> None:
    env = server.env
    first = ok("run", "noop", "-p", "n=1", "-p", "label=007", "--wait", env=env)
    assert "succeeded" in first
    assert "params.json" in first

    again = ok("run", "noop", "-p", "n=1", "-p", "label=007", "--wait", env=env)
    assert "cache hit" in again
    assert "cache hit" in ok("run", "noop", "-p", "n=1", "-p", "label=007", env=env)
    hit = json.loads(ok("run", "noop", "-p", "n=1", "-p", "label=007", "--json", env=env))
    assert hit["submission"] == "cache_hit"
    assert hit["params"] == {"n": 1, "label": "007"}  # typed by the schema: 007 stays a string

    listed = json.loads(ok("runs", "list", "--json", "--model", "noop", env=env))
    assert [run["id"] for run in listed] == [hit["id"] - n for n in range(4)]
    assert "noop" in ok("runs", "list", env=env)
    other = json.loads(ok("run", "noop", "-p", "n=2", "--wait", "--json", env=env))
    chosen = ["runs", "list", "--json", "--submitter", "admin", "--backend", "local"]
    assert [run["id"] for run in json.loads(ok(*chosen, "--param", "n=2", env=env))] == [other["id"]]
    assert json.loads(ok("runs", "list", "--json", "--param", "n=2", "--param", "label=007", env=env)) == []
    assert json.loads(ok("runs", "list", "--json", "--submitter", "nobody", env=env)) == []
    refused = cli("runs", "list", "--param", "n", env=env)
    assert refused.returncode != 0 and "'n' is not name=value" in refused.stderr
    shown = ok("runs", "show", str(hit["source_run_id"]), env=env)
    assert "succeeded" in shown
    assert "params.json" in shown
    assert json.loads(ok("runs", "show", str(hit["id"]), "--json", env=env))["cache_hit"] is True

    outputs = ok("runs", "outputs", str(hit["id"]), env=env)
    assert hit["outputs"][0]["sha256"] in outputs
    ok("runs", "outputs", str(hit["id"]), "--download", str(tmp_path / "downloaded"), env=env)
    assert json.loads((tmp_path / "downloaded" / "params.json").read_text()) == {"n": 1, "label": "007"}

    failed = cli("run", "failing", "--wait", env=env)
    assert failed.returncode == 1
    assert "failed" in failed.stdout
    assert "exit status 3" in failed.stdout
    failed_id = json.loads(ok("runs", "list", "--json", "--model", "failing", env=env))[0]["id"]
    assert "about to fail" in ok("runs", "logs", str(failed_id), env=env)

    assert "sleeper" in ok("models", "list", env=env)
    model = ok("models", "show", "sleeper", env=env)
    for text in ("seconds", "number", "ignore_sigterm", "file to append one line to per execution"):
        assert text in model


def test_mistakes_become_messages(server: Server, tmp_path: Path) -> None:
    env = server.env
    bad_value = cli("run", "noop", "-p", "n=notanumber", env=env)
    assert bad_value.returncode == 1
    assert "params.n" in bad_value.stderr
    assert bad_value.stderr.startswith("error: ")

    unknown = cli("run", "nosuch", "--wait", env=env)
    assert unknown.returncode == 1
    assert "unknown model 'nosuch'" in unknown.stderr

    no_equals = cli("run", "noop", "-p", "n", env=env)
    assert no_equals.returncode == 2
    assert "name=value" in no_equals.stderr

    assert "unknown run 9999" in cli("runs", "show", "9999", env=env).stderr

    params_file = tmp_path / "params.yaml"
    params_file.write_text("n: 5\nlabel: from-file\n")
    run = json.loads(ok("run", "noop", "--params-file", str(params_file), "-p", "n=6", "--json", env=env))
    assert run["params"] == {"n": 6, "label": "from-file"}  # -p overrides the file
    wait_until(server, run["id"], FINAL)
    refused = cli("runs", "cancel", str(run["id"]), env=env)
    assert refused.returncode == 1
    assert "already ended" in refused.stderr


def test_following_cancelling_and_interrupting(server: Server) -> None:
    env = server.env
    quick = json.loads(ok("run", "sleeper", "-p", "seconds=1", "-p", "tag=follow", "--json", env=env))
    followed = ok("runs", "logs", str(quick["id"]), "--follow", env=env)
    assert "step 10 of 10" in followed  # printed everything, then stopped at the end of the run

    slow = json.loads(ok("run", "sleeper", "-p", "seconds=30", "-p", "tag=cancel", "--json", env=env))
    wait_until(server, slow["id"], {"running"})
    assert "cancelled" in ok("runs", "cancel", str(slow["id"]), env=env)
    assert json.loads(ok("runs", "show", str(slow["id"]), "--json", env=env))["status"] == "cancelled"

    waiting = subprocess.Popen(
        [sys.executable, "-m", "modelrunner", "run", "sleeper", "-p", "seconds=30", "-p", "tag=interrupt", "--wait"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert waiting.stdout is not None
    submitted = waiting.stdout.readline()  # the run id is printed before the progress bar starts
    assert "created" in submitted
    run_id = int(submitted.split()[1])
    wait_until(server, run_id, {"running"})
    waiting.send_signal(signal.SIGINT)
    stdout, stderr = waiting.communicate(timeout=10)
    assert waiting.returncode == 130
    assert "continues on the server" in stderr
    assert f"modelrunner runs cancel {run_id}" in stderr
    assert "Traceback" not in stdout + stderr
    assert httpx.get(headers=server.headers, url=f"{server.url}/api/v1/runs/{run_id}").json()["status"] == "running"
    ok("runs", "cancel", str(run_id), env=env)


def test_local_run_needs_no_server(server_env: dict[str, str], tmp_path: Path) -> None:
    env = nowhere(server_env)
    out = tmp_path / "out"
    shown = ok("run", "noop", "--local", "-p", "n=4", "--output-dir", str(out), env=env)
    assert json.loads((out / "params.json").read_text()) == {"n": 4, "label": ""}
    assert "params.json" in shown
    assert str(out / "modelrunner.log") in shown

    ok("run", "sleeper", "--local", "-p", "seconds=0.2", env=env, cwd=tmp_path)
    [folder] = (tmp_path / "modelrunner-outputs").iterdir()
    assert folder.name.startswith("sleeper-")
    assert (folder / "done.txt").read_text() == "slept 0.2\n"

    failed = cli("run", "failing", "--local", "--output-dir", str(tmp_path / "failed"), env=env)
    assert failed.returncode == 1
    assert "exit status 3" in failed.stdout
    assert "about to fail" in (tmp_path / "failed" / "modelrunner.log").read_text()

    invalid = cli("run", "noop", "--local", "-p", "n=x", env=env)
    assert invalid.returncode == 1
    assert "params.n" in invalid.stderr


def test_interrupting_a_local_run_stops_the_model_and_its_children(server_env: dict[str, str], tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    command = ["run", "forker", "--local", "-p", f"pidfile={pidfile}", "--output-dir", str(tmp_path / "out")]
    process = subprocess.Popen(
        [sys.executable, "-m", "modelrunner", *command],
        env=nowhere(server_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline and process.poll() is None, "the model did not start"
        time.sleep(0.05)
    pids = [int(pid) for pid in pidfile.read_text().split()]
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=15)
    assert process.returncode == 130
    assert "cancelled" in stdout
    assert "Traceback" not in stdout + stderr
    assert all(gone(pid) for pid in pids)


def test_check_names_every_problem(workspace: Path) -> None:
    env = dict(os.environ)
    shutil.copytree(TESTS / "workspace" / "broken", workspace / "broken")
    (workspace / "missing_program").mkdir()
    (workspace / "missing_program" / "model.yaml").write_text('name: missing_program\ncommand: ["no-such-program-x"]\n')
    result = cli("check", "--workspace", str(workspace), env=env)
    assert result.returncode == 1
    for text in ("broken/model.yaml", "command", "resources.timeout", "unknown_field", "missing_program/model.yaml"):
        assert text in result.stdout
    assert "no-such-program-x" in result.stdout


def test_init_then_check_then_run_the_example(tmp_path: Path) -> None:
    env = nowhere(dict(os.environ))
    new = tmp_path / "new"
    created = ok("init", str(new), env=env)
    assert "growth/model.yaml" in created
    assert "modelrunner check" in created
    refused = cli("init", str(new), env=env)
    assert refused.returncode == 1
    assert "not empty" in refused.stderr

    assert "growth" in ok("check", "--workspace", str(new), env=env)
    out = tmp_path / "out"
    ok("run", "growth", "--local", "-w", str(new), "-p", "steps=20", "--output-dir", str(out), env=env)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["params"]["steps"] == 20
    assert (out / "series.csv").read_text().count("\n") == 22  # header and steps 0 to 20


def test_unreachable_server_and_missing_workspace(server_env: dict[str, str], tmp_path: Path) -> None:
    env = nowhere(server_env)
    result = cli("runs", "list", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot reach the modelrunner server at {env['MODELRUNNER_SERVER']}")
    assert "MODELRUNNER_SERVER" in result.stderr

    serve = cli("serve", "--workspace", str(tmp_path / "absent"), env=env)
    assert serve.returncode == 1
    assert "does not exist" in serve.stderr


def test_db_upgrade_reports_the_revision(server_env: dict[str, str]) -> None:
    upgraded = ok("db", "upgrade", env=server_env)
    newest = sorted(p.name[:4] for p in (REPO / "src/modelrunner/store/migrations/versions").glob("0*.py"))[-1]
    assert f"at revision {newest}" in upgraded
