"""What an attacker found, kept as regressions: every size a caller controls has a limit, and
out-of-range ids and cursors answer 4xx, never 500 (on SQLite and PostgreSQL alike)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from modelrunner.errors import InvalidInput
from modelrunner.platform import Platform
from tests.conftest import Server, wait_for_run
from tests.integration.runs_api import submit

HUGE = "99999999999999999999"  # over 2**63 - 1
OPEN_MODEL = """\
name: open
title: Takes any parameters
command: ["python", "-c", "pass"]
params:
  type: object
  additionalProperties: true
"""


@pytest.fixture
def open_model(workspace: Path) -> str:
    """A model whose schema takes any parameters: only the server's limits bound them."""
    (workspace / "open").mkdir()
    (workspace / "open" / "model.yaml").write_text(OPEN_MODEL)
    return "open"


def _runs_in_store(client: TestClient) -> int:
    return len(client.get("/api/v1/runs", params={"limit": 500}).json()["items"])


def test_a_body_over_the_limit_is_refused_naming_it(client: TestClient, open_model: str) -> None:
    big = {"params": {"blob": "x" * (2 << 20)}}
    response = client.post(f"/api/v1/models/{open_model}/runs", json=big)
    assert response.status_code == 413
    assert response.json()["limit"] == "max_body_bytes"
    assert "MODELRUNNER_MAX_BODY_BYTES" in response.json()["detail"]
    assert _runs_in_store(client) == 0


def test_a_body_without_a_length_is_counted(client: TestClient, open_model: str) -> None:
    def chunks() -> Any:
        yield b'{"params": {"blob": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}}'

    response = client.post(
        f"/api/v1/models/{open_model}/runs", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413, response.text
    assert response.json()["limit"] == "max_body_bytes"


@pytest.mark.parametrize(
    ("params", "limit", "field"),
    [
        ({f"p{i}": i for i in range(101)}, "max_params", "params"),
        ({"notes": "y" * 70000}, "max_param_string_length", "notes"),
        ({"deep": {"list": list(range(10001))}}, "max_param_list_length", "deep"),
    ],
)
def test_parameters_over_a_limit_are_refused_naming_it(
    client: TestClient, open_model: str, params: dict[str, Any], limit: str, field: str
) -> None:
    response = client.post(f"/api/v1/models/{open_model}/runs", json={"params": params})
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert limit in error["msg"]
    assert error["loc"][:3] == ["body", "params", field][: len(error["loc"][:3])]
    assert _runs_in_store(client) == 0


def test_limits_are_settings(platform: Platform, open_model: str) -> None:
    platform.settings = platform.settings.model_copy(update={"max_params": 2})
    from tests.conftest import admin_client

    with admin_client(platform) as client:
        response = client.post(f"/api/v1/models/{open_model}/runs", json={"params": {"a": 1, "b": 2, "c": 3}})
        assert response.status_code == 422
        assert submit(client, open_model, {"a": 1, "b": 2})["status"]


def test_a_list_of_runs_carries_a_bounded_size_of_parameters(client: TestClient, open_model: str) -> None:
    run = submit(client, open_model, {"small": 1, "big": "z" * 60000, "after": "kept"})
    listed = client.get("/api/v1/runs").json()["items"][0]
    assert listed["params_truncated"] is True
    assert listed["params"] == {"small": 1, "after": "kept"}
    assert listed["url"] == f"/api/v1/runs/{run['id']}"
    full = client.get(listed["url"]).json()
    assert full["params"]["big"] == "z" * 60000
    assert full["params_truncated"] is False


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/runs/{HUGE}",
        f"/api/v1/runs/{HUGE}/logs",
        f"/api/v1/runs/{HUGE}/events",
        f"/api/v1/runs/1/events?after={HUGE}",
        f"/api/v1/runs/1/logs?offset={HUGE}",
        f"/api/v1/runs?parent={HUGE}",
        "/api/v1/runs?cursor=OTk5OTk5OTk5OTk5OTk5OTk5OTk",  # base64 of a 22-digit number
        f"/api/v1/deliveries/{HUGE}",
        f"/api/v1/deliveries?before={HUGE}",
        f"/api/v1/deliveries?subscription={HUGE}",
        f"/api/v1/datasets/anything/syncs/{HUGE}",
        f"/api/v1/datasets/anything/versions?offset={HUGE}",
        f"/runs/{HUGE}",
        f"/runs/{HUGE}/stream",
    ],
)
def test_out_of_range_ids_and_cursors_are_4xx(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code in (404, 422), (path, response.status_code, response.text)


def test_out_of_range_ids_in_other_methods_are_4xx(client: TestClient) -> None:
    assert client.delete(f"/api/v1/subscriptions/{HUGE}").status_code == 422
    assert client.post(f"/api/v1/runs/{HUGE}/cancel").status_code == 422
    assert client.post("/api/v1/subscriptions", json={"run_id": int(HUGE), "channel": "email"}).status_code == 422


@pytest.mark.parametrize(
    ("path", "where"),
    [
        ("/api/v1/export/status?model=%00", "query parameter 'model'"),
        ("/api/v1/runs?model=a%00b", "query parameter 'model'"),
        ("/api/v1/models/no%00op", "path"),
        ("/runs?model=%00", "query parameter 'model'"),
    ],
)
def test_a_nul_in_the_url_is_a_400_naming_where(client: TestClient, path: str, where: str) -> None:
    # PostgreSQL cannot compare text with NUL: without the check this was a 500 there.
    response = client.get(path)
    assert response.status_code == 400, response.text
    assert where in response.json()["detail"]


def test_a_value_the_database_cannot_hold_is_the_callers_error(platform: Platform) -> None:
    """PostgreSQL refuses NUL in text (SQLite keeps it): a request carrying one is answered 422,
    never 500, whichever route took it to the store."""
    if platform.database.is_sqlite:
        return
    with pytest.raises(InvalidInput, match="cannot be stored"), platform.database.write() as session:
        session.execute(text("UPDATE runs SET error = :error WHERE id = -1"), {"error": "a\x00b"})


@pytest.mark.parametrize("attempt", ["1", HUGE])
def test_a_made_up_callback_token_is_refused_not_a_500(client: TestClient, attempt: str) -> None:
    response = client.post(
        f"/api/v1/attempts/{attempt}/progress",
        json={"fraction": 0.5},
        headers={"Authorization": f"Bearer mra_{HUGE}_x"},
    )
    assert response.status_code in (401, 403, 404, 422), response.text


def test_a_huge_id_on_the_command_line_is_a_message(server: Server) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "modelrunner", "runs", "show", HUGE], env=server.env, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "9223372036854775807" in done.stderr


LOG_SIZE = 95 << 20


def _big_log(server: Server, client: httpx.Client, state_dir: Path) -> int:
    run = client.post("/api/v1/models/noop/runs", json={"params": {"label": "big log"}}).json()
    wait_for_run(client.get, run["id"])
    log = state_dir / "logs" / str(run["id"]) / "1.log"
    line = b"0123456789 " * 9 + b"\n"
    with log.open("ab") as handle:
        for _ in range(LOG_SIZE // (len(line) * 1000)):
            handle.write(line * 1000)
    return int(run["id"])


def test_reading_a_large_log_takes_bounded_memory(server: Server, tmp_path: Path) -> None:
    """The attack: 8 parallel reads of a 95 MB log took the server from 159 to 1,282 MB."""
    state_dir = Path(server.env["MODELRUNNER_DATA_DIR"])
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=60) as client:
        run_id = _big_log(server, client, state_dir)
        assert server.process is not None
        process = psutil.Process(server.process.pid)
        before = process.memory_info().rss
        peak = before
        sizes: list[int] = []

        def read(offset: int) -> None:
            response = client.get(f"/api/v1/runs/{run_id}/logs", params={"offset": offset})
            sizes.append(len(response.content))

        for offset in (0, LOG_SIZE - 10):
            threads = [threading.Thread(target=read, args=(offset,)) for _ in range(8)]
            for thread in threads:
                thread.start()
            while any(t.is_alive() for t in threads):
                peak = max(peak, process.memory_info().rss)
            for thread in threads:
                thread.join()
        assert max(sizes) <= 1 << 20
        assert peak - before < 64 << 20, f"the server grew by {(peak - before) >> 20} MB"

    # The command line still prints the whole log, a page at a time.
    done = subprocess.run(
        [sys.executable, "-m", "modelrunner", "runs", "logs", str(run_id)], env=server.env, capture_output=True
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout) == (state_dir / "logs" / str(run_id) / "1.log").stat().st_size
