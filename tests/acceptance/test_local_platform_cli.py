"""``modelrunner run --local`` runs what a server runs: a pipeline with a fan-out (cached in the
local store, so an identical second run computes nothing) and a model reading a dataset (synced
into the local store first). The real CLI as a subprocess, with no server anywhere."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.acceptance.test_cli import cli, nowhere, ok
from tests.conftest import TESTS
from tests.dataset_workspace import build_workspace

pytestmark = pytest.mark.store_free


@pytest.fixture
def env() -> dict[str, str]:
    return nowhere({k: v for k, v in os.environ.items() if not k.startswith("MODELRUNNER_")})


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """tests/workspace with the test pipeline (``regional``) and ``counter``, which counts the
    rows of the ``cases`` dataset: a folder of this test."""
    data = tmp_path / "cases"
    (data / "data").mkdir(parents=True)
    (data / "data" / "cases.csv").write_text("a\nb\nc\n")
    folder = build_workspace(tmp_path / "workspace", {"cases": {"source": "files", "url": str(data)}})
    shutil.copytree(TESTS / "pipeline_model", folder / "regional")
    shutil.copytree(TESTS / "chain_model", folder / "corpora")
    return folder


def test_a_pipeline_fans_out_locally_and_an_identical_run_is_answered_from_the_local_cache(
    workspace: Path, env: dict[str, str], tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.txt"
    args = ["run", "regional", "--local", "-w", str(workspace), "-p", f"ledger={ledger}", "-p", 'regions=["uk","fr"]']

    first = ok(*args, "--output-dir", str(tmp_path / "first"), env=env)

    assert "succeeded" in first
    assert sorted(ledger.read_text().split()) == ["check", "estimate:fr", "estimate:uk", "publish", "summarise"]
    assert (tmp_path / "first" / "publish" / "published.txt").read_text() == "2 regions, total 4\n"
    assert json.loads((tmp_path / "first" / "estimate" / "uk" / "estimate.json").read_text())["region"] == "uk"
    log = (tmp_path / "first" / "modelrunner.log").read_text()
    assert "==> step estimate[uk]: succeeded <==" in log and "==> step publish: succeeded <==" in log

    second = cli(*args, "--output-dir", str(tmp_path / "second"), "--json", env=env)

    assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert summary["submission"] == "cache_hit" and summary["status"] == "succeeded"
    assert len(ledger.read_text().split()) == 5  # nothing executed again
    assert (tmp_path / "second" / "publish" / "published.txt").read_text() == "2 regions, total 4\n"
    assert {s["step"] for s in summary["steps"]} == {"estimate", "check", "summarise", "publish"}

    # A failing item fails the pipeline; its step's error is named and the exit status says so.
    failed = cli(*args, "-p", "fail_region=fr", "--output-dir", str(tmp_path / "failed"), env=env)
    assert failed.returncode == 1
    assert "failed" in failed.stdout
    assert "no data for fr" in (tmp_path / "failed" / "modelrunner.log").read_text()


def test_a_model_reading_a_dataset_runs_locally_on_the_synced_data(
    workspace: Path, env: dict[str, str], tmp_path: Path
) -> None:
    args = ["run", "counter", "--local", "-w", str(workspace), "-p", "n=2"]

    ok(*args, "--output-dir", str(tmp_path / "first"), env=env)
    assert json.loads((tmp_path / "first" / "count.json").read_text()) == {"rows": 3, "n": 2}

    # New data is a new version: synced, so the same request computes again, on it.
    (tmp_path / "cases" / "data" / "cases.csv").write_text("a\nb\nc\nd\n")
    ok(*args, "--output-dir", str(tmp_path / "second"), env=env)
    assert json.loads((tmp_path / "second" / "count.json").read_text()) == {"rows": 4, "n": 2}

    unknown = cli(*args, "-i", "deaths=abcd", env=env)
    assert unknown.returncode == 1
    assert "no input 'deaths'" in unknown.stderr


def test_item_by_item_chains_and_skipped_steps_run_locally_as_on_a_server(
    workspace: Path, env: dict[str, str], tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.txt"
    args = ["run", "corpora", "--local", "-w", str(workspace), "-p", f"ledger={ledger}", "--json"]
    # beta's tests are slow: alpha's statistics start (and see only alpha's tests) before they end.
    answer = ok(*args, "-p", "slow=beta", "-p", "sleep=2", "--output-dir", str(tmp_path / "out"), env=env)

    summary = json.loads(answer)
    lines = ledger.read_text().splitlines()
    assert lines.index("end test_stats:alpha") < lines.index("end tests:beta")
    assert "start test_stats:alpha tests/alpha/tests.txt" in lines  # only its own item's
    steps = {(s["step"], s["item"]): s["status"] for s in summary["steps"]}
    assert steps[("test_stats", "alpha")] == steps[("summary", None)] == "succeeded"
    assert ("daily_update", None) not in steps  # when: params.run_daily_update is false: no run
    assert not any(line.startswith("start daily_update") for line in lines)


def test_interrupting_a_local_pipeline_cancels_it_and_leaves_no_model_process(
    workspace: Path, env: dict[str, str], tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.txt"
    command = ["run", "regional", "--local", "-w", str(workspace), "-p", f"ledger={ledger}", "-p", "sleep=60"]
    process = subprocess.Popen(
        [sys.executable, "-m", "modelrunner", *command, "--output-dir", str(tmp_path / "out")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not ledger.exists() or not ledger.read_text().strip():
        assert time.monotonic() < deadline and process.poll() is None, "no step started"
        time.sleep(0.05)

    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)

    assert process.returncode == 130, stdout + stderr
    assert "cancelled" in stdout
    assert "Traceback" not in stdout + stderr
    left = [p for p in psutil.process_iter(["cmdline"]) if str(ledger) in " ".join(p.info["cmdline"] or [])]
    assert left == []
