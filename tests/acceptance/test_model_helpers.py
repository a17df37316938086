"""Models as teams write them, run by a real ``modelrunner serve``: an R model with modelrunner's
R helper package (the examples/r_models Rt estimate, and one that fails), and Python models that
print tqdm progress bars, with the bars read as progress and switched off."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.acceptance.test_cli import cli
from tests.conftest import FINAL, REPO, Server, empty_database

NEEDS_R = pytest.mark.skipif(
    shutil.which("Rscript") is None,
    reason="R is not installed (Debian: apt-get install r-base-core r-cran-jsonlite)",
)

_FAILING_R = """\
library(modelrunner)
p <- params()
progress(0.3, "reading the cases")
stop("no case counts for region ", p$region)
"""

_BARS = """\
import time
from tqdm import tqdm

for day in tqdm(range(22), desc="Fitting"):
    time.sleep(0.15)
print("fitted")
"""


def _model(folder: Path, spec: str, files: dict[str, str]) -> None:
    folder.mkdir()
    (folder / "model.yaml").write_text(spec)
    for name, text in files.items():
        (folder / name).write_text(text)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module, and one ``modelrunner worker`` of its pool `pool`: the R
    example's workspace, plus a failing R model and two Python models printing tqdm bars (one
    with `progress: {bars: false}`); the `*_remote` copies run on the worker."""
    root = tmp_path_factory.mktemp("model-helpers")
    workspace = root / "workspace"
    shutil.copytree(REPO / "examples" / "r_models", workspace)
    with (workspace / "modelrunner.yaml").open("a") as spec:
        spec.write("backends: {local: {type: local}, pool: {type: worker}}\ndefault_backend: local\n")
    region = "params: {type: object, properties: {region: {type: string, default: atlantis}}}\n"
    _model(workspace / "failing_r", f"name: failing_r\ncommand: [Rscript, fail.R]\n{region}", {"fail.R": _FAILING_R})
    for remote in ("", "_remote"):
        where = "backend: pool\n" if remote else ""
        _model(
            workspace / f"bars{remote}", f"name: bars{remote}\ncommand: [python, bars.py]\n{where}", {"bars.py": _BARS}
        )
        off = f"name: bars_off{remote}\ncommand: [python, bars.py]\nprogress: {{bars: false}}\n{where}"
        _model(workspace / f"bars_off{remote}", off, {"bars.py": _BARS})
    shutil.copytree(workspace / "rt_estimate", workspace / "rt_remote")
    spec_text = (workspace / "rt_remote" / "model.yaml").read_text().replace("name: rt_estimate", "name: rt_remote")
    (workspace / "rt_remote" / "model.yaml").write_text(spec_text + "backend: pool\n")
    (root / "state").mkdir()
    with empty_database(root / "state") as url:
        env = {key: value for key, value in os.environ.items() if not key.startswith("MODELRUNNER_")}
        env.update(
            MODELRUNNER_WORKSPACE=str(workspace),
            MODELRUNNER_DATA_DIR=str(root / "state"),
            MODELRUNNER_DATABASE_URL=url,
            MODELRUNNER_LOCAL_SLOTS="2",
            MODELRUNNER_GRACE_SECONDS="1",
            MODELRUNNER_POLL_SECONDS="0.2",
        )
        server = Server(env, root / "server.log")
        server.env["MODELRUNNER_SERVER"] = server.url
        server.start()
        worker_env = {**server.env, "MODELRUNNER_ENVIRONMENTS_DIR": str(root / "worker-environments")}
        with (root / "worker.log").open("wb") as worker_log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "modelrunner", "worker", "--pool", "pool"],
                env=worker_env,
                stdout=worker_log,
                stderr=subprocess.STDOUT,
            )
        try:
            yield server
        finally:
            worker.terminate()
            worker.wait(30)
            server.stop()


def _run(server: Server, model: str, params: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    """Submit a run and wait until it is final; the run as the API shows it."""
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
        response = http.post(f"/api/v1/models/{model}/runs", json={"params": params, "cache": "refresh"})
        assert response.status_code == 201, response.text
        run_id = response.json()["id"]
        deadline = time.monotonic() + timeout
        while True:
            run: dict[str, Any] = http.get(f"/api/v1/runs/{run_id}").json()
            if run["status"] in FINAL:
                return run
            assert time.monotonic() < deadline, f"run {run_id} still {run['status']} after {timeout}s"
            time.sleep(0.1)


def _get(server: Server, path: str) -> httpx.Response:
    response = httpx.get(f"{server.url}{path}", headers=server.headers, timeout=30)
    assert response.status_code == 200, response.text
    return response


def _progress_events(server: Server, run_id: int) -> list[tuple[float, str]]:
    events = _get(server, f"/api/v1/runs/{run_id}/events?limit=1000").json()["items"]
    return [(e["data"]["fraction"], e["data"]["message"]) for e in events if e["type"] == "run.progress"]


def _output(server: Server, run: dict[str, Any], path: str) -> str:
    (found,) = [output for output in run["outputs"] if output["path"] == path]
    return _get(server, f"/api/v1/runs/{run['id']}/outputs/{found['path']}").text


@NEEDS_R
def test_an_r_model_gets_its_params_writes_outputs_and_reports_progress(served: Server) -> None:
    run = _run(served, "rt_estimate", {"window": 10, "si_mean": 5.2})
    assert run["status"] == "succeeded", _get(served, f"/api/v1/runs/{run['id']}/logs").text
    rows = list(csv.DictReader(io.StringIO(_output(served, run, "rt.csv"))))
    assert len(rows) == 70 - 10  # cases.csv holds 70 days; the first full window of 10 ends on day 11
    assert all(float(row["rt_lower"]) <= float(row["rt_mean"]) <= float(row["rt_upper"]) for row in rows)
    summary = json.loads(_output(served, run, "summary.json"))
    assert summary["params"] == {"window": 10, "si_mean": 5.2, "si_sd": 2.9}  # the default filled in
    assert summary["trend"] == "declining" and summary["date"] == rows[-1]["date"]
    progress = _progress_events(served, run["id"])
    assert len(progress) >= 5 and [f for f, _ in progress] == sorted(f for f, _ in progress)
    assert progress[-1] == (1.0, f"Rt on {summary['date']} is {summary['rt_mean']} - declining")
    assert run["progress"]["fraction"] == 1.0


@NEEDS_R
def test_a_failing_r_script_fails_its_run_with_rs_message_in_the_log(served: Server) -> None:
    run = _run(served, "failing_r", {"region": "north"})
    assert run["status"] == "failed"
    # The R helper hands R's error message to the run's error (MODELRUNNER_FAILURE_NOTE).
    assert run["error"] == "the model ended with exit status 1: no case counts for region north"
    log = _get(served, f"/api/v1/runs/{run['id']}/logs").text
    assert "Error: no case counts for region north" in log
    assert _progress_events(served, run["id"]) == [(0.3, "reading the cases")]


@NEEDS_R
def test_check_names_a_missing_rscript(tmp_path: Path) -> None:
    workspace = tmp_path / "r_models"
    shutil.copytree(REPO / "examples" / "r_models", workspace)
    env = {key: value for key, value in os.environ.items() if not key.startswith("MODELRUNNER_")}
    found = cli("check", "--workspace", str(workspace), env=env)
    assert found.returncode == 0, found.stdout + found.stderr
    without_r = {**env, "PATH": os.path.dirname(os.__file__)}  # a PATH without R's programs
    missing = cli("check", "--workspace", str(workspace), env=without_r)
    said = missing.stdout + missing.stderr
    assert missing.returncode == 1
    assert "the program 'Rscript' is not found on PATH: R is not installed here" in said


def test_a_tqdm_bar_moves_the_runs_progress(served: Server) -> None:
    run = _run(served, "bars", {})
    assert run["status"] == "succeeded"
    progress = _progress_events(served, run["id"])
    # 22 steps over 3.3 s: the bar read at most once a second, and at its end.
    assert 3 <= len(progress) <= 6, progress
    assert progress[-1] == (1.0, "Fitting 22/22")
    assert 0.0 < progress[-2][0] < 1.0 and progress[-2][1].startswith("Fitting ")
    assert run["progress"] == {"fraction": 1.0, "message": "Fitting 22/22"}
    log = _get(served, f"/api/v1/runs/{run['id']}/logs").text
    assert log.count("Fitting:") == 1 and "\r" not in log and log.endswith("fitted\n")


def test_a_model_can_switch_reading_its_bars_off(served: Server) -> None:
    run = _run(served, "bars_off", {})
    assert run["status"] == "succeeded"
    assert _progress_events(served, run["id"]) == []
    assert run["progress"]["message"] is None


@NEEDS_R
def test_a_remote_worker_runs_r_models_with_the_helper_and_reads_bars_alike(served: Server, tmp_path: Path) -> None:
    run = _run(served, "rt_remote", {"window": 10})
    assert run["status"] == "succeeded", _get(served, f"/api/v1/runs/{run['id']}/logs").text
    assert run["backend"] == "pool"
    assert len(list(csv.DictReader(io.StringIO(_output(served, run, "rt.csv"))))) == 60
    assert _progress_events(served, run["id"])[-1][1].startswith("Rt on 2024-05-09 is ")
    bars = _run(served, "bars_remote", {})
    progress = _progress_events(served, bars["id"])
    assert len(progress) >= 2 and progress[-1] == (1.0, "Fitting 22/22"), progress
    assert 0.0 < progress[-2][0] < 1.0
    off = _run(served, "bars_off_remote", {})
    assert off["status"] == "succeeded" and _progress_events(served, off["id"]) == []
