"""A model's own environment from the command line: ``check`` refuses a model that starts its own
``.venv`` (which the folder copy leaves out) and says what to write instead; ``run --local``
builds the environment the model names and runs the model in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.acceptance.test_cli import cli, ok
from tests.conftest import REPO

pytestmark = pytest.mark.store_free

MODEL = """\
import importlib.metadata
import sys

import pyjokes
from modelrunner import job

print("pyjokes", importlib.metadata.version("pyjokes"), "under", sys.executable)
(job.outputs() / "joke.txt").write_text(pyjokes.get_joke())
"""


def test_check_names_a_model_that_starts_its_own_venv(workspace: Path) -> None:
    folder = workspace / "own_venv"
    folder.mkdir()
    (folder / "model.yaml").write_text("name: own_venv\ncommand: [./.venv/bin/python, model.py]\n")
    (folder / "model.py").write_text(MODEL)
    # The team's way: a venv made in the model folder, with the model's packages in it.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder / ".venv")], check=True)

    result = cli("check", "--workspace", str(workspace), env=dict(os.environ))

    assert result.returncode == 1
    assert (
        "own_venv/model.yaml: command: the program './.venv/bin/python' is not part of the model: "
        "the folder copy leaves .venv out; use `environment: requirements.txt`"
    ) in " ".join(result.stdout.split())


def test_run_local_builds_the_models_environment_and_runs_in_it(workspace: Path, tmp_path: Path) -> None:
    folder = workspace / "jokes"
    folder.mkdir()
    (folder / "model.yaml").write_text("name: jokes\ncommand: [python, model.py]\nenvironment: requirements.txt\n")
    (folder / "requirements.txt").write_text("pyjokes==0.8.3\n")
    (folder / "model.py").write_text(MODEL)
    env = {**os.environ, "MODELRUNNER_DATA_DIR": str(tmp_path / "data")}
    assert "jokes" in ok("check", "--workspace", str(workspace), env=env)

    for attempt, said in enumerate(("building the environment requirements.txt", "is built already")):
        output = tmp_path / f"out{attempt}"
        ok("run", "jokes", "--local", "--workspace", str(workspace), "--output-dir", str(output), env=env)
        log = (output / "modelrunner.log").read_text()
        assert said in log
        assert f"pyjokes 0.8.3 under {tmp_path / 'data' / 'environments'}" in log
        assert (output / "joke.txt").read_text()


def test_a_notebook_model_runs_in_its_environment(tmp_path: Path) -> None:
    # The example notebook, given an environment: its kernel runs there, and sees only its packages.
    workspace = tmp_path / "workspace"
    shutil.copytree(REPO / "examples" / "notebook", workspace)
    folder = workspace / "outbreak_report"
    spec = (folder / "model.yaml").read_text()
    with_environment = spec.replace(
        "notebook: report.ipynb\n", "notebook: report.ipynb\nenvironment: requirements.txt\n"
    )
    (folder / "model.yaml").write_text(with_environment)
    env = {**os.environ, "MODELRUNNER_DATA_DIR": str(tmp_path / "data")}
    run = ("run", "outbreak_report", "--local", "--workspace", str(workspace))

    # numpy is one of modelrunner's packages, but not of this environment.
    (folder / "requirements.txt").write_text("papermill\nipykernel\nnbconvert\n")
    # (not cli(): the log's last lines it prints hold the notebook's own traceback)
    command = [sys.executable, "-m", "modelrunner", *run, "--output-dir", str(tmp_path / "without")]
    failed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert failed.returncode == 1
    assert "No module named 'numpy'" in (tmp_path / "without" / "modelrunner.log").read_text()

    (folder / "requirements.txt").write_text("papermill\nipykernel\nnbconvert\nnumpy\n")
    done = cli(*run, "--output-dir", str(tmp_path / "with"), env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "building the environment requirements.txt" in (tmp_path / "with" / "modelrunner.log").read_text()
    assert {"report.ipynb", "report.html"} <= {p.name for p in (tmp_path / "with").iterdir()}
