"""``modelrunner run MODEL --batch FILE.jsonl``: the real CLI against a real ``modelrunner serve``
whose batches hold at most two runs, so a file of five goes in three batches."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.acceptance.test_cli import cli, ok
from tests.conftest import Server


@pytest.fixture
def small_batches(server_env: dict[str, str], tmp_path: Path) -> Iterator[Server]:
    running = Server({**server_env, "MODELRUNNER_MAX_BATCH_RUNS": "2"}, tmp_path / "server.log")
    running.env["MODELRUNNER_SERVER"] = running.url
    running.start()
    try:
        yield running
    finally:
        running.stop()


def test_a_file_is_submitted_in_batches_of_the_servers_limit(small_batches: Server, tmp_path: Path) -> None:
    runs = tmp_path / "runs.jsonl"
    runs.write_text('{"n": 1}\n{"n": 2}\n\n{"n": 3, "label": "own"}\n{"n": 4}\n{"n": 1}\n')

    stdout = ok("run", "noop", "--batch", str(runs), "-p", "label=shared", env=small_batches.env)

    ids = [int(line) for line in stdout.split()]
    assert len(ids) == 5 and ids[4] == ids[0], "the repeated first line joins its run"
    with httpx.Client(base_url=small_batches.url, headers=small_batches.headers) as http:
        params = [http.get(f"/api/v1/runs/{run_id}").json()["params"] for run_id in ids]
    assert params == [
        {"n": 1, "label": "shared"},
        {"n": 2, "label": "shared"},
        {"n": 3, "label": "own"},
        {"n": 4, "label": "shared"},
        {"n": 1, "label": "shared"},
    ]


def test_a_refused_batch_names_the_line_and_a_resubmission_computes_nothing_twice(
    small_batches: Server, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.jsonl"
    runs.write_text('{"n": 1}\n{"n": 2}\n{"n": 3}\n{"n": "three"}\n')

    refused = cli("run", "noop", "--batch", str(runs), env=small_batches.env)

    assert refused.returncode == 1
    first_ids = [int(line) for line in refused.stdout.split()]
    assert len(first_ids) == 2, "the first batch was taken before the second was refused"
    assert f"{runs} line 4: params.n" in refused.stderr
    assert "the 2 runs before line 3 were submitted" in refused.stderr

    runs.write_text('{"n": 1}\n{"n": 2}\n{"n": 3}\n{"n": 4}\n')
    answers = json.loads(ok("run", "noop", "--batch", str(runs), "--json", env=small_batches.env))

    assert [a["params"]["n"] for a in answers] == [1, 2, 3, 4]
    # Each of the first two joins its run, or, once that ended, is answered from its result.
    assert [a["source_run_id"] if a["cache_hit"] else a["id"] for a in answers[:2]] == first_ids
    assert [a["submission"] for a in answers[2:]] == ["created", "created"]


def test_batch_refuses_wait_and_bad_lines_before_sending(small_batches: Server, tmp_path: Path) -> None:
    runs = tmp_path / "runs.jsonl"
    runs.write_text('{"n": 1}\n[2]\n')

    waited = cli("run", "noop", "--batch", str(runs), "--wait", env=small_batches.env)
    bad_line = cli("run", "noop", "--batch", str(runs), env=small_batches.env)

    assert waited.returncode == 2 and "--wait takes one run" in waited.stderr
    assert bad_line.returncode == 1 and f"{runs} line 2: must be an object of parameters" in bad_line.stderr
    with httpx.Client(base_url=small_batches.url, headers=small_batches.headers) as http:
        assert http.get("/api/v1/runs").json()["items"] == []
