"""Triggers: a new data version (from a real sync of a git repository) or a succeeded run (of a
model, or of one step of a pipeline) creates runs, with ``{event.<field>}`` parameters; each event
fires a trigger once, across restarts and concurrent servers; a trigger never loops on its own
runs; back-fills and switched-off triggers fire nothing."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from modelrunner.data.sync import VERSION_ADDED
from modelrunner.engine.triggers import Triggers
from modelrunner.platform import Platform
from modelrunner.settings import Settings
from modelrunner.store import migrate
from modelrunner.store.tables import EventRow, RunRow
from tests import data_fixtures
from tests.conftest import TESTS, wait_for_run
from tests.data_fixtures import GitRepo
from tests.dataset_workspace import build_workspace, git_dataset
from tests.integration.runs_api import submit, wait_until

git_repo = data_fixtures.git_repo

# Runs on the newest cases when a sync finds a new version; `version` comes from the event.
VERSIONED_SPEC = {
    "name": "versioned",
    "command": ["python", "versioned.py"],
    "params": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"version": {"type": "string"}},
        "required": ["version"],
    },
    "inputs": {"cases": "cases"},
    "outputs": [{"path": "seen.json"}],
    "triggers": [
        {
            "name": "new-cases",
            "on": "dataset.version_added",
            "dataset": "cases",
            "params": {"version": "{event.version}"},
        }
    ],
}
VERSIONED_CODE = """\
from modelrunner import job
import json

rows = (job.inputs() / "cases" / "data" / "cases.csv").read_text().splitlines()
(job.outputs() / "seen.json").write_text(json.dumps({"version": job.params()["version"], "rows": len(rows)}))
"""
PIPE_SPEC = {
    "name": "pipe",
    "steps": {
        "fetch": {"command": ["python", "-c", "print('fetched')"], "foreach": ["east", "west"]},
        "report": {"command": ["python", "-c", "print('reported')"], "needs": ["fetch"]},
    },
}
ON_NOOP = "{event.params.n}"


def noop_like(root: Path, name: str, triggers: list[dict[str, Any]]) -> None:
    """A copy of the test workspace's noop model (params n and label), with these triggers."""
    shutil.copytree(TESTS / "workspace" / "noop", root / name, ignore=shutil.ignore_patterns("__pycache__"))
    spec = yaml.safe_load((root / name / "model.yaml").read_text())
    spec.update(name=name, triggers=triggers)
    (root / name / "model.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))


def write_model(root: Path, spec: dict[str, Any], code: str | None = None) -> None:
    (root / spec["name"]).mkdir()
    (root / spec["name"] / "model.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    if code is not None:
        (root / spec["name"] / f"{spec['name']}.py").write_text(code)


@pytest.fixture
def workspace(tmp_path: Path, git_repo: GitRepo) -> Path:
    root = build_workspace(tmp_path / "workspace", {"cases": git_dataset(git_repo)})
    write_model(root, VERSIONED_SPEC, VERSIONED_CODE)
    write_model(root, PIPE_SPEC)
    noop = {"on": "run.succeeded", "model": "noop"}
    noop_like(
        root,
        "follower",
        [
            {"name": "after-noop", **noop, "params": {"n": ON_NOOP, "label": "{event.model}"}},
            {"name": "typo", **noop, "params": {"n": "{event.params.nn}"}},
        ],
    )
    # Runs again after each of its own runs, with new parameters each time: a loop, were it allowed.
    noop_like(
        root, "echo", [{"name": "again", "on": "run.succeeded", "model": "echo", "params": {"n": "{event.run_id}"}}]
    )
    noop_like(
        root,
        "watcher",
        [
            {
                "name": "each-fetch",
                "on": "run.succeeded",
                "model": "pipe",
                "step": "fetch",
                "params": {"label": "{event.item}"},
            },
            {"name": "whole-pipe", "on": "run.succeeded", "model": "pipe", "params": {"label": "{event.kind}"}},
        ],
    )
    return root


@pytest.fixture
def store(platform: Platform) -> Iterator[Platform]:
    """The platform's database migrated, nothing started: the test ticks triggers itself."""
    migrate.upgrade(platform.database)
    yield platform
    platform.database.dispose()


def runs_of(platform: Platform, model: str) -> list[RunRow]:
    with platform.database.read() as session:
        return list(session.scalars(select(RunRow).where(RunRow.model_name == model).order_by(RunRow.id)))


def firings_of(client: TestClient, trigger: str) -> list[dict[str, Any]]:
    """Oldest first."""
    response = client.get(f"/api/v1/triggers/{trigger}/firings", params={"limit": 100})
    assert response.status_code == 200, response.text
    return list(reversed(response.json()))


def trigger(client: TestClient, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(t for t in client.get("/api/v1/triggers").json() if t["name"] == name)
    return found


def newest_event(platform: Platform, kind: str) -> int:
    with platform.database.read() as session:
        return int(session.scalar(select(func.max(EventRow.id)).where(EventRow.type == kind)) or 0)


def sync(client: TestClient, walk_all: bool = False) -> None:
    started = client.post("/api/v1/datasets/cases/sync", json={"all": walk_all}).json()

    def finished() -> bool:
        status = client.get(f"/api/v1/datasets/cases/syncs/{started['id']}").json()["status"]
        assert status != "failed"
        return status == "succeeded"

    wait_until(finished, 30, "the sync of cases")


def seen_by(client: TestClient, name: str, event_id: int) -> None:
    """Wait until the trigger has evaluated the events up to ``event_id``."""
    wait_until(lambda: (trigger(client, name)["last_event_id"] or 0) >= event_id, 30, f"{name} evaluated {event_id}")


def counted(get: Callable[[], list[Any]], count: int, what: str) -> list[Any]:
    """Wait until ``get()`` returns ``count`` items; those items."""
    return wait_until(lambda: found if len(found := get()) == count else None, 30, what)


def tick_until(triggers: Triggers, check: Callable[[], bool], what: str) -> None:
    """Tick as the automation loop would until ``check`` holds (PostgreSQL reads events after a
    short settling delay)."""
    wait_until(lambda: triggers.tick() >= 0 and check(), 30, what, interval=0.1)


# --- dataset.version_added ------------------------------------------------------------------------


def test_a_new_data_version_runs_the_triggered_model_on_that_version(
    client: TestClient, platform: Platform, settings: Settings, git_repo: GitRepo
) -> None:
    seen_by(client, "versioned/new-cases", 0)  # the server has seen the trigger: history stays unfired
    first = git_repo.commit({"data/cases.csv": "day,cases\n1,10\n"}, "first cases")
    sync(client)

    [run] = wait_until(lambda: runs_of(platform, "versioned"), 30, "a run of versioned")
    done = wait_for_run(client.get, run.id)
    assert done["status"] == "succeeded"
    assert run.params == {"version": first}
    assert run.inputs == {"cases": {"dataset": "cases", "version": first}}
    assert run.origin == "trigger:versioned/new-cases"
    assert json.loads(client.get(f"/api/v1/runs/{run.id}/outputs/seen.json").content) == {"version": first, "rows": 2}

    # Two versions found by one sync: the newest is new data, the one below it history. One run,
    # computed on the newest version.
    git_repo.commit({"data/cases.csv": "day,cases\n1,10\n2,12\n"}, "second")
    third = git_repo.commit({"data/cases.csv": "day,cases\n1,10\n2,12\n3,15\n"}, "third")
    sync(client)
    seen_by(client, "versioned/new-cases", newest_event(platform, VERSION_ADDED))
    [_, later] = counted(lambda: runs_of(platform, "versioned"), 2, "two runs of versioned")
    assert later.params == {"version": third}
    assert later.inputs["cases"]["version"] == third
    assert wait_for_run(client.get, later.id)["status"] == "succeeded"
    fired = firings_of(client, "versioned/new-cases")
    assert [(f["status"], f["run_ids"]) for f in fired] == [("submitted", [run.id]), ("submitted", [later.id])]

    # A server started afresh on the same database fires nothing again.
    restarted = Platform(settings)
    try:
        assert restarted.triggers.tick() == 0
    finally:
        restarted.database.dispose()

    # A back-fill (history recorded again with `all`) is not new data: it fires nothing.
    assert client.delete("/api/v1/datasets/cases/versions").status_code == 200
    sync(client, walk_all=True)
    seen_by(client, "versioned/new-cases", newest_event(platform, VERSION_ADDED))
    assert len(runs_of(platform, "versioned")) == 2
    assert len(firings_of(client, "versioned/new-cases")) == 2


def test_a_switched_off_trigger_does_not_fire_for_what_happened_meanwhile(
    store: Platform, workspace: Path, git_repo: GitRepo
) -> None:
    triggers = Triggers(store.database, store.workspace, store.submitter)
    triggers.tick()
    spec_path = workspace / "versioned" / "model.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec_path.write_text(yaml.safe_dump({**spec, "automatic": False}))
    git_repo.commit({"data/cases.csv": "day,cases\n1,10\n"}, "while off")
    store.syncs.sync("cases")
    newest = newest_event(store, VERSION_ADDED)
    cursor = lambda: next(t for t in triggers.overview() if t.name == "versioned/new-cases").last_event_id  # noqa: E731

    tick_until(triggers, lambda: cursor() == newest, "the switched-off trigger passes the event")
    spec_path.write_text(yaml.safe_dump(spec))  # switched on again
    triggers.tick()
    assert runs_of(store, "versioned") == []

    second = git_repo.commit({"data/cases.csv": "day,cases\n1,10\n2,11\n"}, "while on")
    store.syncs.sync("cases")
    tick_until(triggers, lambda: bool(runs_of(store, "versioned")), "a run for the new version")
    assert [run.params["version"] for run in runs_of(store, "versioned")] == [second]


# --- run.succeeded --------------------------------------------------------------------------------


def test_a_succeeded_run_fires_its_watchers_once_even_with_several_servers(
    client: TestClient, platform: Platform, settings: Settings
) -> None:
    seen_by(client, "follower/after-noop", 0)
    others = [Platform(settings) for _ in range(2)]  # two more servers evaluating the same triggers
    stop = threading.Event()

    def keep_ticking(other: Platform) -> None:
        while not stop.is_set():
            other.triggers.tick()

    threads = [threading.Thread(target=keep_ticking, args=(other,)) for other in others]
    for thread in threads:
        thread.start()
    try:
        noop = submit(client, "noop", {"n": 7, "label": "x"})
        assert wait_for_run(client.get, noop["id"])["status"] == "succeeded"
        [follower] = wait_until(lambda: runs_of(platform, "follower"), 30, "a follower run")
        assert wait_for_run(client.get, follower.id)["status"] == "succeeded"
        seen_by(client, "follower/after-noop", newest_event(platform, "run.succeeded"))
        seen_by(client, "follower/typo", newest_event(platform, "run.succeeded"))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for other in others:
            other.database.dispose()

    assert follower.params == {"n": 7, "label": "noop"}
    assert follower.origin == "trigger:follower/after-noop"
    [fired] = firings_of(client, "follower/after-noop")
    assert fired["status"] == "submitted" and fired["run_ids"] == [follower.id]
    assert fired["cause"] == f"event:{_succeeded_event(platform, noop['id'])}"
    [typo] = firings_of(client, "follower/typo")
    assert typo["status"] == "failed" and typo["run_ids"] == []
    assert typo["detail"] == "params.n: the event has no field 'params.nn' (fields of event.params: label, n)"
    assert len(runs_of(platform, "follower")) == 1


def test_a_trigger_never_fires_for_its_own_runs(client: TestClient, platform: Platform) -> None:
    seen_by(client, "echo/again", 0)
    first = submit(client, "echo", {"n": 0})
    assert wait_for_run(client.get, first["id"])["status"] == "succeeded"

    fired = counted(lambda: firings_of(client, "echo/again"), 2, "two firings of echo/again")

    [_, again] = runs_of(platform, "echo")
    assert again.params == {"n": first["id"], "label": ""}
    assert [f["status"] for f in fired] == ["submitted", "skipped"]
    assert fired[0]["run_ids"] == [again.id]
    assert "created by this trigger" in fired[1]["detail"]
    assert wait_for_run(client.get, again.id)["status"] == "succeeded"
    assert len(runs_of(platform, "echo")) == 2


def test_a_step_trigger_fires_per_step_run_and_a_model_trigger_once_per_pipeline(
    client: TestClient, platform: Platform
) -> None:
    seen_by(client, "watcher/whole-pipe", 0)
    seen_by(client, "watcher/each-fetch", 0)
    pipe = submit(client, "pipe")
    assert wait_for_run(client.get, pipe["id"])["status"] == "succeeded"

    watchers = counted(lambda: runs_of(platform, "watcher"), 3, "three watcher runs")
    seen_by(client, "watcher/whole-pipe", newest_event(platform, "run.succeeded"))
    assert sorted(run.params["label"] for run in watchers) == ["east", "pipeline", "west"]
    assert len(firings_of(client, "watcher/each-fetch")) == 2
    assert len(firings_of(client, "watcher/whole-pipe")) == 1
    assert len(runs_of(platform, "watcher")) == 3


def _succeeded_event(platform: Platform, run_id: int) -> int:
    with platform.database.read() as session:
        statement = select(EventRow.id).where(EventRow.run_id == run_id, EventRow.type == "run.succeeded")
        return int(session.scalars(statement).one())
