"""Every ``pip install`` command of README.md, as a new user types it: each in a new virtualenv
with the pip that Python ships (``python -m venv``, never upgraded), from a clean copy of the
repository. The commands are read from the README, so a README changed without its commands
working fails here.

The two commands at the top are installed for real and then used: the quickstart is served and
runs its model, and without an extra, serve names the extra a setting needs; the test extra's
pytest starts and every backend's library imports. An extra's command (``'modelrunner[aws]'``, ...)
is resolved with ``--dry-run``: what broke with the bundled pip was resolution, and the packages
of every extra are installed for real by the test extra, whose tests import and use them. A
``modelrunner`` requirement finds the copy's wheel through ``--find-links``, as if published.

pip's cache is the user's own, shared by every venv here and kept between runs."""

from __future__ import annotations

import ensurepip
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, free_port

pytestmark = [pytest.mark.store_free, pytest.mark.timeout(1200)]

README = REPO / "README.md"
BUNDLED_PIP = ensurepip.version()
# Inline code spans (which the README wraps across lines) and fenced blocks.
_CODE = re.compile(r"```[a-z]*\n(.*?)```|`([^`]+)`", re.DOTALL)


def readme_commands() -> list[str]:
    """Every distinct ``pip install ...`` command of the README, in order of appearance."""
    commands: list[str] = []
    for block, inline in _CODE.findall(README.read_text(encoding="utf-8")):
        lines = block.splitlines() if block else [" ".join(inline.split())]
        for line in lines:
            for part in line.split("&&"):
                command = part.split(" #")[0].strip()
                if command.startswith("pip install ") and command not in commands:
                    commands.append(command)
    return commands


COMMANDS = readme_commands()
QUICKSTART = "pip install ."
TEST_EXTRA = 'pip install -e ".[test]"'


def test_the_readme_gives_the_two_commands_and_an_install_for_every_extra() -> None:
    assert COMMANDS[:2] == [QUICKSTART, TEST_EXTRA]
    named = {extra for command in COMMANDS for extra in re.findall(r"\[([a-z0-9,]+)\]", command)}
    extras = {extra for group in named for extra in group.split(",")}
    assert {"postgres", "s3", "aws", "azure", "kubernetes", "dask"} <= extras


@pytest.fixture(scope="module")
def clean_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's files as git knows them (committed or not, never ignored): no build
    folders, virtualenvs or state of the working tree."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    copy = tmp_path_factory.mktemp("repo")
    for name in filter(None, (item.decode() for item in listed)):
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the working tree is not part of it
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    return copy


def new_venv(folder: Path) -> dict[str, str]:
    """A new virtualenv with the bundled pip; the environment of a shell that activated it."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELRUNNER_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(VIRTUAL_ENV=str(folder), PATH=f"{folder / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    version = subprocess.run(["pip", "--version"], env=env, capture_output=True, text=True, check=True).stdout
    assert version.startswith(f"pip {BUNDLED_PIP} from {folder}"), version
    return env


@pytest.fixture(scope="module")
def wheels(clean_copy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the copy's wheel, for the README's ``modelrunner[...]`` requirements."""
    folder = tmp_path_factory.mktemp("wheels")
    env = new_venv(tmp_path_factory.mktemp("wheel-venv") / "venv")
    subprocess.run(
        ["pip", "wheel", "--no-deps", "--wheel-dir", str(folder), str(clean_copy)],
        env=env,
        capture_output=True,
        check=True,
        timeout=600,
    )
    return folder


def pip_install(command: str, env: dict[str, str], cwd: Path, *extra_args: str) -> None:
    """Run ``command`` (with ``extra_args``) as a shell would, and print its wall time."""
    started = time.monotonic()
    done = subprocess.run(
        [*shlex.split(command), *extra_args], env=env, cwd=cwd, capture_output=True, text=True, timeout=1100
    )
    seconds = time.monotonic() - started
    assert done.returncode == 0, f"`{command}` failed after {seconds:.0f} s:\n{done.stdout[-3000:]}\n{done.stderr}"
    print(f"`{command}`{' (dry run)' if '--dry-run' in extra_args else ''}: {seconds:.1f} s")


@pytest.fixture(scope="module")
def first_install(clean_copy: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The first command's ``pip install .``: the environment of its venv, which has no extra."""
    env = new_venv(tmp_path_factory.mktemp("first") / "venv")
    pip_install(QUICKSTART, env, clean_copy)
    return env


# The tests of the first command share its venv: one xdist worker installs it once.
FIRST_INSTALL = pytest.mark.xdist_group("readme-first-install")


@FIRST_INSTALL
def test_the_first_command_serves_the_quickstart_and_runs_its_model(
    first_install: dict[str, str], clean_copy: Path, tmp_path: Path
) -> None:
    serve = "modelrunner serve --workspace examples/quickstart"
    assert f"{QUICKSTART} && {serve}" in README.read_text(encoding="utf-8")
    url = f"http://127.0.0.1:{free_port()}"
    env = {**first_install, "MODELRUNNER_PORT": url.rsplit(":", 1)[1]}
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(shlex.split(serve), env=env, cwd=clean_copy, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"`{serve}` exited: {log.read_text()}"
            try:
                if httpx.get(f"{url}/api/v1/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"`{serve}` did not answer in 60 s: {log.read_text()}"
            time.sleep(0.2)
        # The tour's first steps: the admin's token, then the quickstart's model (numpy and all).
        token = subprocess.run(
            ["modelrunner", "tokens", "create", "--user", "admin", "--workspace", "examples/quickstart", "--quiet"],
            env=env,
            cwd=clean_copy,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        client_env = {**env, "MODELRUNNER_SERVER": url, "MODELRUNNER_TOKEN": token}
        done = subprocess.run(
            ["modelrunner", "run", "seir", "-p", "days=30", "--wait"],
            env=client_env,
            cwd=clean_copy,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        run = httpx.get(f"{url}/api/v1/runs/1", headers={"Authorization": f"Bearer {token}"}).json()
        assert run["status"] == "succeeded", run
    finally:
        process.terminate()
        process.wait(timeout=30)


@FIRST_INSTALL
@pytest.mark.parametrize(
    ("setting", "extra"),
    [
        ("MODELRUNNER_DATABASE_URL=postgresql://modelrunner@127.0.0.1:1/nowhere", "postgres"),
        ("MODELRUNNER_ARTIFACTS_URL=s3://results/modelrunner", "s3"),
    ],
)
def test_without_an_extra_serve_names_the_extra_to_install(
    first_install: dict[str, str], clean_copy: Path, tmp_path: Path, setting: str, extra: str
) -> None:
    name, _, value = setting.partition("=")
    env = {**first_install, name: value, "MODELRUNNER_DATA_DIR": str(tmp_path / "state")}
    env["MODELRUNNER_PORT"] = str(free_port())
    done = subprocess.run(
        ["modelrunner", "serve", "--workspace", "examples/quickstart"],
        env=env,
        cwd=clean_copy,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    last = done.stderr.splitlines()[-1]
    assert last.startswith("error: ") and last.endswith(f"is not installed: pip install 'modelrunner[{extra}]'"), (
        done.stderr
    )
    assert "Traceback" not in done.stderr and "bug" not in done.stderr


def test_the_second_command_installs_the_test_tools(clean_copy: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    env = new_venv(venv)
    try:
        pip_install(TEST_EXTRA, env, clean_copy)
        version = subprocess.run(["pytest", "--version"], env=env, cwd=clean_copy, capture_output=True, text=True)
        assert version.returncode == 0 and version.stdout.startswith("pytest "), version.stdout + version.stderr
        # Every extra's library imports, in the versions the resolver chose.
        backends = ", ".join(f"modelrunner.backends.{name}" for name in ("aws", "azure_batch", "kubernetes", "dask"))
        imported = subprocess.run(
            ["python", "-c", f"import s3fs, psycopg, {backends}"], env=env, cwd=tmp_path, capture_output=True, text=True
        )
        assert imported.returncode == 0, imported.stderr
    finally:
        shutil.rmtree(venv)  # some 1 GB, of no use once checked


@pytest.mark.parametrize("command", [c for c in COMMANDS if c not in (QUICKSTART, TEST_EXTRA)])
def test_every_other_install_command_resolves(command: str, wheels: Path, tmp_path: Path) -> None:
    env = new_venv(tmp_path / "venv")
    report = tmp_path / "report.json"
    pip_install(command, env, tmp_path, "--dry-run", "--report", str(report), "--find-links", str(wheels))
    # pip only warns about an extra the project does not have: a misspelt one would pass unseen.
    named = {extra for group in re.findall(r"\[([a-z0-9,]+)\]", command) for extra in group.split(",")}
    if named:  # an install of modelrunner with extras; another tool's install (podman-compose) only resolves
        resolved = json.loads(report.read_text(encoding="utf-8"))["install"]
        project = next(item for item in resolved if item["metadata"]["name"] == "modelrunner")
        assert named <= set(project["metadata"].get("provides_extra", [])), named
