"""``modelrunner run`` with bad parameters: every problem on its own line, naming its parameter,
with no traceback, from the server and with ``--local`` alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.acceptance.test_cli import cli, nowhere
from tests.conftest import Server

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
