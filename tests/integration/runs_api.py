"""What the integration tests do again and again through the HTTP API and the store."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import psutil
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from modelrunner.clock import utcnow
from modelrunner.platform import Platform
from modelrunner.spec.backend_spec import DEFAULT_BACKEND
from modelrunner.store.tables import EventRow, RunRow

T = TypeVar("T")

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)$")


def submit(client: TestClient, model: str, params: dict[str, Any] | None = None, **body: Any) -> dict[str, Any]:
    """POST a run; fail unless it was accepted (201 new or joined, 200 cache hit)."""
    response = client.post(f"/api/v1/models/{model}/runs", json={"params": params or {}, **body})
    assert response.status_code in (200, 201), response.text
    run: dict[str, Any] = response.json()
    return run


def wait_until(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true after {timeout}s")
        time.sleep(interval)


def get_run(client: TestClient, run_id: int) -> dict[str, Any]:
    response = client.get(f"/api/v1/runs/{run_id}")
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    return run


def wait_for_status(client: TestClient, run_id: int, status: str, timeout: float = 15) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        run = get_run(client, run_id)
        return run if run["status"] == status else None

    return wait_until(reached, timeout, f"run {run_id} {status}")


def fill_the_backend(client: TestClient, platform: Platform, counters: Path) -> tuple[list[int], int]:
    """Submit long sleeper runs until one is left waiting in the queue: as many as the idle
    ``local`` backend has room for (it holds more attempts than it has slots: those waiting for a
    slot), each waited for until the backend took it, then one more that it has no room for.

    Returns the ids of the runs the backend took and the id of the queued one. Each run appends
    its pid to ``counters / <tag>`` when it starts, so a test can tell whether it ever ran.
    Counting the room, rather than taking a run that stays queued a while for one the backend has
    no room for, keeps a loaded machine (a slow dispatcher) from making a run about to be taken
    pass for the queued one.
    """
    room = platform.backends[DEFAULT_BACKEND].free_slots()

    def sleeper(tag: str) -> int:
        run_id: int = submit(client, "sleeper", {"seconds": 60, "tag": tag, "counter": str(counters / tag)})["id"]
        return run_id

    def taken_by_the_backend(run_id: int) -> bool:
        return bool(get_run(client, run_id)["status"] != "queued")

    taken: list[int] = []
    for number in range(room):
        run_id = sleeper(f"blocker-{number}")
        wait_until(partial(taken_by_the_backend, run_id), 30, f"run {run_id} taken by the backend")
        taken.append(run_id)
    queued = sleeper(f"blocker-{room}")
    time.sleep(0.5)  # the dispatcher, woken by the submission, finds no room for it
    assert get_run(client, queued)["status"] == "queued", f"the backend had room for more than {room} runs"
    return taken, queued


def events(client: TestClient, run_id: int) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/runs/{run_id}/events")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def status_path(client: TestClient, run_id: int) -> list[str]:
    """The statuses a run went through, from its events, oldest first."""
    return [e["data"]["to"] for e in events(client, run_id) if e["type"] == "run.status"]


def logs(client: TestClient, run_id: int) -> str:
    response = client.get(f"/api/v1/runs/{run_id}/logs")
    assert response.status_code == 200, response.text
    return response.text


def write_model(workspace: Path, name: str, spec: str, files: dict[str, str] | None = None) -> Path:
    """Add a model folder to a workspace; the platform sees it at the next lookup."""
    folder = workspace / name
    folder.mkdir()
    (folder / "model.yaml").write_text(f"name: {name}\n{spec}", encoding="utf-8")
    for file_name, text in (files or {}).items():
        (folder / file_name).write_text(text, encoding="utf-8")
    return folder


def read_pid(path: Path) -> int | None:
    """The pid a model wrote to ``path``, once it is there."""
    text = path.read_text().strip() if path.exists() else ""
    return int(text) if text.isdigit() else None


def process_gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (a zombie waiting for its parent counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def new_run_row(**overrides: Any) -> RunRow:
    """A run as the store holds it, for tests that write rows directly (no workspace involved)."""
    values: dict[str, Any] = {
        "model_name": "noop",
        "model_version": "v1",
        "params": {},
        "cache_key": uuid.uuid4().hex,
        "status": "queued",
        "cache_hit": False,
        "slots": 1,
        "created_at": utcnow(),
    }
    return RunRow(**(values | overrides))


def stored_counts(platform: Platform) -> tuple[int, int]:
    """How many runs and events the store holds."""
    with platform.database.read() as session:
        runs = session.scalar(select(func.count()).select_from(RunRow))
        events = session.scalar(select(func.count()).select_from(EventRow))
    return int(runs or 0), int(events or 0)
