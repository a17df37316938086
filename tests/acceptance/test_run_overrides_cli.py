"""A run's own timeout (``overridable:`` in model.yaml), with the real CLI: on a server, in the
API's body, and with ``--local``; refused past the model's limit, naming it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
import yaml

from tests.acceptance.test_cli import cli, nowhere, ok, wait_until
from tests.conftest import FINAL, Server


@pytest.fixture
def workspace(workspace: Path) -> Path:
    """``napper``: the sleeper with a 60 s timeout of its own that a run may set up to 1 h."""
    shutil.copytree(workspace / "sleeper", workspace / "napper")
    spec = yaml.safe_load((workspace / "napper" / "model.yaml").read_text())
    spec.update(name="napper", overridable={"timeout": {"max": "1h"}})
    (workspace / "napper" / "model.yaml").write_text(yaml.safe_dump(spec))
    return workspace


def submitted(server: Server, *args: str) -> dict[str, object]:
    answer: dict[str, object] = json.loads(ok("run", "napper", *args, "--json", env=server.env))
    return answer


def test_a_run_sets_its_own_timeout_within_the_models_limit(server: Server, tmp_path: Path) -> None:
    env = server.env
    short = submitted(server, "-p", "seconds=3", "--timeout", "1s")
    ended = wait_until(server, int(str(short["id"])), FINAL)
    assert ended["status"] == "timed_out", ended
    # The model's own timeout (60 s) lets the same run finish; the override is not in the key,
    # and a timed out run answers nothing, so this one computes.
    default = submitted(server, "-p", "seconds=3")
    assert default["submission"] == "created"
    assert wait_until(server, int(str(default["id"])), FINAL)["status"] == "succeeded"

    over = cli("run", "napper", "-p", "seconds=3", "--timeout", "2h", env=env)
    assert over.returncode == 1
    assert "overrides.timeout: 2h is over the limit of model 'napper' (overridable.timeout.max: 1h)" in over.stderr
    not_allowed = cli("run", "sleeper", "--timeout", "1s", env=env)
    assert not_allowed.returncode == 1
    assert "model 'sleeper' does not let a run set its own timeout" in not_allowed.stderr

    with httpx.Client(base_url=server.url, headers=server.headers) as http:
        body = {"params": {"seconds": 4}, "overrides": {"timeout": 7200}}
        refused = http.post("/api/v1/models/napper/runs", json=body)
        assert refused.status_code == 422
        assert "overridable.timeout.max: 1h" in refused.text
        unknown = http.post("/api/v1/models/napper/runs", json={"overrides": {"memory": "1Gi"}})
        assert unknown.status_code == 422
        assert "'memory' cannot be set per run" in unknown.text

    # --local applies it as the server does.
    local = cli(
        "run", "napper", "--local", "-p", "seconds=3", "--timeout", "1s", "--output-dir", str(tmp_path / "out"),
        env=nowhere(env),
    )  # fmt: skip
    assert local.returncode == 1
    assert "timed_out" in local.stdout or "timed out" in local.stdout
