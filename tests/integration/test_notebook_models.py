"""Notebook models (``notebook:`` in model.yaml) run with real papermill and a real kernel: through a
real server (uvicorn, the local backend), as a pipeline step, and by the runner alone, whose
outputs folder is looked at after it exits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest

from modelrunner.execution.failure_note import FAILURE_NOTE, LONGEST_NOTE
from modelrunner.execution.forms import NOTEBOOK_RUNNER
from modelrunner.execution.notebook_runner import FAILURE_NOTE as RUNNERS_NOTE
from modelrunner.execution.notebook_runner import LONGEST_NOTE as RUNNERS_LONGEST
from modelrunner.settings import Settings
from tests.conftest import empty_database, wait_for_run
from tests.integration.runs_api import wait_until, write_model
from tests.integration.served import Served


def notebook(*cells: str, parameters: str | None = None, kernel: str = "python3") -> str:
    """A notebook's file text: a markdown title, the cell tagged ``parameters`` when given, then
    ``cells`` as code cells. It was saved with ``kernel`` (a name of its author's machine)."""
    made = nbformat.v4.new_notebook()
    made.metadata["kernelspec"] = {"name": kernel, "language": "python", "display_name": kernel}
    made.cells.append(nbformat.v4.new_markdown_cell("# A notebook model"))
    if parameters is not None:
        tagged = nbformat.v4.new_code_cell(parameters)
        tagged.metadata["tags"] = ["parameters"]
        made.cells.append(tagged)
    made.cells.extend(nbformat.v4.new_code_cell(source) for source in cells)
    text: str = nbformat.writes(made)
    return text


GROWTH = notebook(
    "import json, pathlib, time\nvalue = start * (1 + rate) ** steps\nprint(f'grew to {value:.2f}')",
    "time.sleep(0.5)",
    "result = {'value': value, 'inputs': modelrunner_inputs}\n"
    "pathlib.Path(modelrunner_outputs, 'result.json').write_text(json.dumps(result))",
    parameters="start = 1.0\nrate = 0.0\nsteps = 1",
    kernel="conda-env-growth-py",  # no such kernel here: the model's interpreter runs it anyway
)
FAILING = notebook(
    "import os\nprint('loading the regions in', os.path.basename(os.getcwd()))",
    "regions = {'north': 3}\nregions[region]",
    "print('never printed')",
    parameters="region = 'north'",
)
OWN_PROGRESS = notebook(
    "from modelrunner import job",
    "for step in range(1, 5):\n    job.progress(step / 4, f'fitting {step} of 4')",
    "print('done fitting')",
)
# Notes its kernel's pid, then works for a minute: to be cancelled.
LONG = notebook(
    "import os, pathlib, time\npathlib.Path(pidfile).write_text(str(os.getpid()))",
    "print('working', flush=True)\ntime.sleep(60)",
    "print('never reached')",
    parameters="pidfile = ''",
)
# In an environment of its own: packages modelrunner does not have, and its own papermill.
IN_ITS_ENVIRONMENT = notebook(
    "import importlib.metadata, sys\nimport pyjokes\nfrom modelrunner import job",
    "job.progress(0.5, f'pyjokes {importlib.metadata.version(\"pyjokes\")} under {sys.executable}')",
)
REQUIREMENTS = "pyjokes==0.8.3\npapermill>=2.6\nnbconvert>=7.16\nipykernel>=6.29\n"
# A pipeline: a command step writes numbers, a notebook step sums them from its inputs folder.
SUMMARY = notebook(
    "import pathlib\n"
    "numbers = pathlib.Path(modelrunner_inputs, 'prepare', 'numbers.txt').read_text().split()\n"
    "total = sum(int(n) * scale for n in numbers)\n"
    "pathlib.Path(modelrunner_outputs, 'total.txt').write_text(str(total))",
    parameters="scale = 1",
)


def write_notebook_models(workspace: Path) -> None:
    write_model(
        workspace,
        "nb-growth",
        "notebook: growth.ipynb\n"
        "params:\n  type: object\n  properties:\n"
        "    start: {type: number, default: 1}\n    rate: {type: number, default: 0.1}\n"
        "    steps: {type: integer, default: 3}\n"
        "outputs:\n  - path: result.json\n",
        {"growth.ipynb": GROWTH},
    )
    write_model(
        workspace,
        "nb-failing",
        "notebook: analysis/failing.ipynb\nparams:\n  type: object\n  properties:\n    region: {type: string}\n",
    )
    (workspace / "nb-failing" / "analysis").mkdir()
    (workspace / "nb-failing" / "analysis" / "failing.ipynb").write_text(FAILING, encoding="utf-8")
    write_model(
        workspace,
        "nb-environment",
        "notebook: jokes.ipynb\nenvironment: requirements.txt\n",
        {"jokes.ipynb": IN_ITS_ENVIRONMENT, "requirements.txt": REQUIREMENTS},
    )
    write_model(
        workspace,
        "nb-long",
        "notebook: long.ipynb\nparams:\n  type: object\n  properties:\n    pidfile: {type: string}\n",
        {"long.ipynb": LONG},
    )
    write_model(workspace, "nb-own-progress", "notebook: fit.ipynb\n", {"fit.ipynb": OWN_PROGRESS})
    write_model(
        workspace,
        "nb-pipeline",
        "params:\n  type: object\n  properties:\n    scale: {type: integer, default: 1}\n"
        "steps:\n"
        "  prepare:\n    command: [python, prepare.py]\n    outputs: [{path: numbers.txt}]\n"
        "  summary:\n    notebook: summary.ipynb\n    needs: [prepare]\n    outputs: [{path: total.txt}]\n",
        {
            "prepare.py": "import os, pathlib\n"
            "pathlib.Path(os.environ['MODELRUNNER_OUTPUTS'], 'numbers.txt').write_text('1 2 3 4\\n')\n",
            "summary.ipynb": SUMMARY,
        },
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server for the module's runs, its workspace holding the notebook models above."""
    root = tmp_path_factory.mktemp("notebook-models")
    workspace = root / "workspace"
    workspace.mkdir()
    (workspace / "modelrunner.yaml").write_text("name: notebooks\n", encoding="utf-8")
    write_notebook_models(workspace)
    with empty_database(root / "state") as url:
        settings = Settings(
            workspace=workspace,
            data_dir=root / "state",
            database_url=url,
            local_slots=2,
            lease_seconds=3,
            grace_seconds=20,  # a cancelled notebook's runner writes the notebook so far and its HTML
            poll_seconds=0.2,
        )
        started = Served(settings)
        try:
            yield started
        finally:
            started.stop()


def progress_of(served: Served, run_id: int) -> list[tuple[float, str]]:
    return [(e["data"]["fraction"], e["data"]["message"]) for e in served.events(run_id) if e["type"] == "run.progress"]


def test_a_notebook_model_runs_with_its_parameters_and_leaves_the_executed_notebook_and_html(served: Served) -> None:
    run_id = served.submit("nb-growth", {"start": 2, "rate": 0.5, "steps": 2})

    run = wait_for_run(served.http.get, run_id, timeout=60)

    assert run["status"] == "succeeded", run
    assert {o["path"] for o in run["outputs"]} == {"result.json", "growth.ipynb", "growth.html"}
    result = served.http.get(f"/api/v1/runs/{run_id}/outputs/result.json").json()
    assert result["value"] == pytest.approx(4.5)  # 2 * 1.5 ** 2: the run's parameters, not the notebook's
    assert result["inputs"].endswith("/inputs")  # the contract's folders arrive as parameters too
    executed = nbformat.reads(served.http.get(f"/api/v1/runs/{run_id}/outputs/growth.ipynb").text, as_version=4)
    injected = next(c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "rate = 0.5" in injected.source and "modelrunner_outputs = " in injected.source
    outputs_of_cells = [o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert "grew to 4.50\n" in outputs_of_cells
    html = served.http.get(f"/api/v1/runs/{run_id}/outputs/growth.html").text
    assert html.lstrip().lower().startswith("<!doctype html") and "grew to 4.50" in html
    # What the cells print is in the run's log as it is in the notebook.
    assert "grew to 4.50" in served.http.get(f"/api/v1/runs/{run_id}/logs").text


def test_a_notebook_reports_progress_cell_by_cell(served: Served) -> None:
    run_id = served.submit("nb-growth", {"steps": 5})

    run = wait_for_run(served.http.get, run_id, timeout=60)

    assert run["status"] == "succeeded", run
    progress = progress_of(served, run_id)
    # Five code cells: the injected parameters, the notebook's parameters cell and its three own;
    # each report is the cells done over the cells, in order (the store may keep fewer than all).
    expected = [(n / 5, f"cell {n + 1} of 5") for n in range(5)] + [(1.0, "5 of 5 cells ran")]
    assert len(progress) >= 2 and progress[-1] == (1.0, "5 of 5 cells ran"), progress
    assert sorted(progress, key=expected.index) == progress and set(progress) <= set(expected), progress
    assert run["progress"]["fraction"] == 1.0


def test_a_notebook_s_own_progress_takes_over_from_the_cell_count(served: Served) -> None:
    run_id = served.submit("nb-own-progress", {})

    run = wait_for_run(served.http.get, run_id, timeout=60)

    assert run["status"] == "succeeded", run
    messages = [message for _, message in progress_of(served, run_id)]
    own = [f"fitting {n} of 4" for n in range(1, 5)]
    first_own = next(index for index, message in enumerate(messages) if message in own)
    # Once its own came, no cell's: its last report is the run's last (the store may keep fewer).
    assert all(message in own for message in messages[first_own:]) and messages[-1] == "fitting 4 of 4", messages
    assert all(message.startswith("cell ") for message in messages[:first_own]), messages


def test_a_failing_notebook_fails_its_run_naming_the_cell_and_keeps_the_executed_notebook(served: Served) -> None:
    run_id = served.submit("nb-failing", {"region": "south"})

    run = wait_for_run(served.http.get, run_id, timeout=60)

    assert run["status"] == "failed", run
    [attempt] = run["attempts"]
    # The fourth cell as the notebook is written (title, parameters, print, the lookup).
    assert "the notebook failed in cell 4 (In [4]): KeyError: 'south'" in attempt["error"], attempt
    log = served.http.get(f"/api/v1/runs/{run_id}/logs").text
    # It runs in its own folder (analysis/), as Jupyter runs it.
    assert "loading the regions in analysis" in log and "never printed" not in log
    assert "KeyError" in log  # the traceback, for whoever reads the log
    partial = {o["path"]: o for o in attempt.get("partial_outputs", [])}
    assert {"failing.ipynb", "failing.html"} <= set(partial), attempt
    executed = served.http.get(partial["failing.ipynb"]["url"]).text
    assert "KeyError" in executed and "never printed" in executed  # the cell after it, not run
    assert "KeyError" in served.http.get(partial["failing.html"]["url"]).text


def test_cancelling_a_notebook_run_stops_its_kernel_and_keeps_the_notebook_so_far(
    served: Served, tmp_path: Path
) -> None:
    pidfile = tmp_path / "kernel.pid"
    run_id = served.submit("nb-long", {"pidfile": str(pidfile)})
    wait_until(lambda: "working" in served.http.get(f"/api/v1/runs/{run_id}/logs").text, 60, "the long cell runs")
    kernel = psutil.Process(int(pidfile.read_text()))

    response = served.http.post(f"/api/v1/runs/{run_id}/cancel")
    assert response.status_code == 200, response.text

    def attempt_ended() -> dict[str, Any] | None:
        [attempt] = served.http.get(f"/api/v1/runs/{run_id}").json()["attempts"]
        return attempt if attempt["status"] == "cancelled" else None

    # The run is cancelled at once; its attempt ends once the runner has written what it has.
    attempt = wait_until(attempt_ended, 30, "the attempt ended")
    assert served.http.get(f"/api/v1/runs/{run_id}").json()["status"] == "cancelled"
    kernel.wait(timeout=10)  # gone with its attempt (it runs in a session of its own)
    kept = {o["path"]: o["url"] for o in attempt["partial_outputs"]}
    assert set(kept) == {"long.ipynb", "long.html"}
    executed = nbformat.reads(served.http.get(kept["long.ipynb"]).text, as_version=4)
    printed = [o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    assert "working\n" in printed and "never reached\n" not in printed


def test_a_notebook_with_its_own_environment_runs_in_a_kernel_of_that_environment(served: Served) -> None:
    run_id = served.submit("nb-environment", {})

    run = wait_for_run(served.http.get, run_id, timeout=240)

    assert run["status"] == "succeeded", run
    [own] = [message for _, message in progress_of(served, run_id) if message.startswith("pyjokes")]
    builds = served.platform.settings.state_dir / "environments" / "builds"
    assert own.startswith(f"pyjokes 0.8.3 under {builds}"), own
    assert {o["path"] for o in run["outputs"]} == {"jokes.ipynb", "jokes.html"}


def test_a_notebook_runs_as_a_pipeline_step_on_the_outputs_of_the_step_before(served: Served) -> None:
    response = served.http.post("/api/v1/models/nb-pipeline/runs", json={"params": {"scale": 10}})
    assert response.status_code == 201, response.text
    pipeline_id = response.json()["id"]

    pipeline = wait_for_run(served.http.get, pipeline_id, timeout=90)

    assert pipeline["status"] == "succeeded", pipeline
    [summary_id] = next(step for step in pipeline["steps"] if step["name"] == "summary")["run_ids"]
    summary = served.http.get(f"/api/v1/runs/{summary_id}").json()
    assert {o["path"] for o in summary["outputs"]} == {"total.txt", "summary.ipynb", "summary.html"}
    assert served.http.get(f"/api/v1/runs/{summary_id}/outputs/total.txt").text == "100"


# --- the runner alone --------------------------------------------------------------------------


def run_the_runner(
    folder: Path, text: str, params: dict[str, Any], python: str = sys.executable, *arguments: str
) -> tuple[int, str]:
    """The notebook runner on ``text`` in ``folder/model`` under the contract's variables, as an
    attempt starts it (``python`` runs it as a file); its exit status and what it printed."""
    for name in ("model", "inputs", "outputs", "checkpoint", "tmp"):
        (folder / name).mkdir(parents=True)
    (folder / "model" / "work.ipynb").write_text(text, encoding="utf-8")
    (folder / "params.json").write_text(json.dumps(params), encoding="utf-8")
    contract = {
        "MODELRUNNER_PARAMS": str(folder / "params.json"),
        "MODELRUNNER_INPUTS": str(folder / "inputs"),
        "MODELRUNNER_OUTPUTS": str(folder / "outputs"),
        "MODELRUNNER_CHECKPOINT": str(folder / "checkpoint"),
        FAILURE_NOTE: str(folder / "failure-note"),
        "TMPDIR": str(folder / "tmp"),
        "PYTHONUNBUFFERED": "1",
    }
    env = {key: value for key, value in os.environ.items() if not key.startswith("MODELRUNNER_")}
    done = subprocess.run(
        [python, str(NOTEBOOK_RUNNER), *arguments, "work.ipynb"],
        cwd=folder / "model",
        env={**env, **contract},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.store_free
def test_the_executed_notebook_and_html_are_in_the_outputs_folder_when_the_runner_exits_failed(tmp_path: Path) -> None:
    status, printed = run_the_runner(tmp_path, FAILING, {"region": "west"})

    assert status == 1, printed
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["work.html", "work.ipynb"]
    executed = nbformat.read(tmp_path / "outputs" / "work.ipynb", as_version=4)
    errors = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert [(e.ename, e.evalue) for e in errors] == [("KeyError", "'west'")]
    assert "KeyError" in (tmp_path / "outputs" / "work.html").read_text(encoding="utf-8")
    note = (tmp_path / "failure-note").read_text(encoding="utf-8")
    assert note == "the notebook failed in cell 4 (In [4]): KeyError: 'west'\n"
    # IPython's profile is made in the attempt's temporary folder (a model may have no home
    # folder), and the kernel's connection file and sockets are gone with the kernel.
    assert {p.name for p in (tmp_path / "tmp").iterdir()} == {"ipython"}


@pytest.mark.store_free
def test_a_notebook_without_papermill_names_the_extra_or_what_its_environment_lacks(tmp_path: Path) -> None:
    # A bare virtual environment: no papermill, no modelrunner.
    bare = str(tmp_path / "bare" / "bin" / "python")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True, timeout=60)

    status, printed = run_the_runner(tmp_path / "plain", GROWTH, {}, bare)
    assert status == 1
    assert "a notebook model needs ipykernel, which is not installed: pip install 'modelrunner[notebook]'" in printed
    assert "Traceback" not in printed

    status, printed = run_the_runner(tmp_path / "own", GROWTH, {}, bare, "--environment", "requirements.txt")
    assert status == 1
    assert (
        "a notebook model needs ipykernel, which its environment (requirements.txt) does not install: "
        "add papermill, nbconvert and ipykernel to it"
    ) in printed


@pytest.mark.store_free
def test_a_parameter_that_cannot_be_a_python_variable_is_named(tmp_path: Path) -> None:
    status, printed = run_the_runner(tmp_path, GROWTH, {"growth-rate": 0.2})

    assert status == 1
    assert "the parameter 'growth-rate' cannot be a variable of a Python notebook: rename it" in printed
    assert (tmp_path / "failure-note").read_text(encoding="utf-8").startswith("the parameter 'growth-rate'")


@pytest.mark.store_free
def test_the_runner_writes_its_note_where_the_platform_reads_it() -> None:
    # The runner imports nothing of modelrunner (it runs in models' environments): the names are copies.
    assert (RUNNERS_NOTE, RUNNERS_LONGEST) == (FAILURE_NOTE, LONGEST_NOTE)
