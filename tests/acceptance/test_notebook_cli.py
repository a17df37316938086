"""Notebook models at the command line: ``modelrunner check`` refuses a notebook that is missing or
is not one, and ``modelrunner run --local`` runs the notebook example (examples/notebook) under the
same contract as the platform, the real CLI as a subprocess and a real kernel."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.acceptance.test_cli import cli
from tests.conftest import REPO
from tests.integration.test_notebook_models import FAILING, GROWTH

EXAMPLE = REPO / "examples" / "notebook"
pytestmark = pytest.mark.store_free


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No server, no store: what a user has before `serve`."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("MODELRUNNER_")}
    return {**clean, "MODELRUNNER_DATA_DIR": str(tmp_path / "state")}


def test_check_names_a_missing_notebook_and_a_file_that_is_not_one(tmp_path: Path, env: dict[str, str]) -> None:
    workspace = tmp_path / "workspace"
    for name, spec in {
        "good": "notebook: growth.ipynb\n",
        "gone": "notebook: analysis/gone.ipynb\n",
        "named": "notebook: growth.ipynb\nparams:\n  type: object\n  properties:\n    growth-rate: {type: number}\n",
        "text": "notebook: notes.ipynb\n",
        "staged": "steps:\n  prepare:\n    command: [python, prepare.py]\n"
        "  report:\n    notebook: report.ipynb\n    needs: [prepare]\n",
    }.items():
        (workspace / name).mkdir(parents=True)
        (workspace / name / "model.yaml").write_text(f"name: {name}\n{spec}", encoding="utf-8")
    (workspace / "modelrunner.yaml").write_text("name: notebooks\n", encoding="utf-8")
    for name in ("good", "named"):
        (workspace / name / "growth.ipynb").write_text(GROWTH, encoding="utf-8")
    (workspace / "text" / "notes.ipynb").write_text("# notes, not a notebook\n", encoding="utf-8")
    (workspace / "staged" / "prepare.py").write_text("print('prepared')\n", encoding="utf-8")
    (workspace / "staged" / "report.ipynb").write_text(json.dumps({"cells": "none", "nbformat": 4}), encoding="utf-8")

    checked = cli("check", "--workspace", str(workspace), env=env)

    assert checked.returncode == 1
    assert checked.stdout.splitlines() == [
        "gone/model.yaml: notebook: the notebook 'analysis/gone.ipynb' does not exist in the model folder",
        "named/model.yaml: params.properties.growth-rate: a notebook's parameters become variables: not a valid name",
        "staged/model.yaml: steps.report.notebook: 'report.ipynb' is not a valid Jupyter notebook: "
        "it has no list of cells",
        "text/model.yaml: notebook: 'notes.ipynb' is not a valid Jupyter notebook: "
        "not JSON (Expecting value: line 1 column 1 (char 0))",
    ]
    assert "4 problems" in checked.stderr


def test_the_notebook_example_runs_locally_with_its_report(tmp_path: Path, env: dict[str, str]) -> None:
    out = tmp_path / "out"
    assert cli("check", "--workspace", str(EXAMPLE), env=env).returncode == 0

    ran = cli(
        "run", "outbreak_report", "--local", "--workspace", str(EXAMPLE), "-p", "growth_rate=0.3",
        "-p", "days=60", "--output-dir", str(out), "--json", env=env, timeout=120,
    )  # fmt: skip

    assert ran.returncode == 0, ran.stdout + ran.stderr
    summary = json.loads(ran.stdout)
    assert {o["path"] for o in summary["outputs"]} == {"cases.csv", "report.ipynb", "report.html"}
    with (out / "cases.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 61  # days 0 to 60: the run's parameter, not the notebook's default
    assert "daily cases peak on day" in (out / "report.html").read_text(encoding="utf-8")
    assert "::progress:: 1.0000 5 of 5 cells ran" in (out / "modelrunner.log").read_text(encoding="utf-8")
    assert list(EXAMPLE.rglob("*.html")) == []  # the example folder is left as it was


def test_a_failing_notebook_run_locally_names_its_cell(tmp_path: Path, env: dict[str, str]) -> None:
    workspace = tmp_path / "workspace"
    (workspace / "failing").mkdir(parents=True)
    (workspace / "failing" / "model.yaml").write_text(
        "name: failing\nnotebook: failing.ipynb\nparams:\n  type: object\n  properties:\n    region: {type: string}\n",
        encoding="utf-8",
    )
    (workspace / "failing" / "failing.ipynb").write_text(FAILING, encoding="utf-8")
    shutil.copy(EXAMPLE / "modelrunner.yaml", workspace / "modelrunner.yaml")

    # Not cli(): the tail of the log it prints holds the notebook's own traceback, as it should.
    ran = subprocess.run(
        [sys.executable, "-m", "modelrunner", "run", "failing", "--local", "--workspace", str(workspace),
         "-p", "region=east", "--output-dir", str(tmp_path / "out")],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert ran.returncode == 1
    assert "the notebook failed in cell 4 (In [4]): KeyError: 'east'" in ran.stdout
    assert "KeyError: 'east'" in ran.stderr  # the last lines of its log
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"failing.ipynb", "failing.html"}
