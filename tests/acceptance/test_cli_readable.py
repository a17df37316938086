"""What the command line shows a person: with bad parameters, every problem on its own line naming
its parameter (from the server and with ``--local`` alike, with no traceback); durations and sizes
as people write them, not raw seconds and bytes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.acceptance.test_cli import cli, nowhere, ok, wait_until
from tests.conftest import FINAL, Server

# noop declares n (integer) and label (string).
BAD = ("-p", "n=three", "-p", "colour=red", "-p", "size=2")
EXPECTED = [
    "error: params.colour: is not a parameter of this model (its parameters: n, label)",
    "error: params.n: 'three' is not of type 'integer'",
    "error: params.size: is not a parameter of this model (its parameters: n, label)",
]


def test_a_submit_prints_every_problem_and_submits_nothing(server: Server) -> None:
    refused = cli("run", "noop", *BAD, env=server.env)

    assert refused.returncode == 1
    assert refused.stderr.splitlines() == EXPECTED
    assert json.loads(cli("runs", "list", "--json", env=server.env).stdout) == []


@pytest.mark.store_free
def test_a_local_run_prints_every_problem_and_runs_nothing(server_env: dict[str, str], tmp_path: Path) -> None:
    refused = cli("run", "noop", "--local", *BAD, "--output-dir", str(tmp_path / "out"), env=nowhere(server_env))

    assert refused.returncode == 1
    assert refused.stderr.splitlines() == EXPECTED
    assert not (tmp_path / "out").exists()


def test_a_batch_file_names_each_line_with_all_its_problems(server: Server, tmp_path: Path) -> None:
    lines = tmp_path / "runs.jsonl"
    lines.write_text('{"n": 1}\n\n{"n": "x", "nn": 2}\n{"label": 3}\n')

    refused = cli("run", "noop", "--batch", str(lines), env=server.env)

    assert refused.returncode == 1
    problems = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert problems == [
        f"error: {lines} line 3: params.n: 'x' is not of type 'integer'",
        f"error: {lines} line 3: params.nn: is not a parameter of this model (its parameters: n, label)",
        f"error: {lines} line 4: params.label: 3 is not of type 'string'",
    ]


def test_timeouts_durations_and_sizes_are_shown_as_people_write_them(server: Server) -> None:
    assert "resources: timeout 2m" in ok("models", "show", "forker", env=server.env)  # 120 seconds
    run = json.loads(ok("run", "noop", "-p", "n=12345", "--json", env=server.env))
    wait_until(server, run["id"], FINAL)

    shown = ok("runs", "show", str(run["id"]), env=server.env)

    assert re.search(r"duration\W+\d+(\.\d)?s\s", shown), shown
    assert re.search(r"params\.json\W+31 B\s", shown), shown  # {"n": 12345, "label": ""}
