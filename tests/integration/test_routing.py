"""Routing on a server with two local backends of different names and slot counts: groups, model
and workspace defaults and explicit requests choose the backend, each run records which rule did,
and each backend's dispatcher runs only its own queue, with its own slots."""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from modelrunner.engine.scheduler import Scheduler
from modelrunner.platform import Platform
from modelrunner.settings import Settings
from modelrunner.store import migrate
from modelrunner.store.tables import RunRow
from tests.conftest import TESTS, Server, admin_client, wait_for_run
from tests.identities import add_user, bearer
from tests.integration.runs_api import get_run, stored_counts, submit, wait_until, write_model

ROUTED: dict[str, Any] = {
    "name": "routing",
    "backends": {
        "wide": {"type": "local", "slots": 2},
        "narrow": {"type": "local", "slots": 1},
        "spare": {"type": "local"},  # the server's --slots
    },
    "default_backend": "wide",
    "routing": [
        {"group": "narrowers", "backend": "narrow"},
        {"group": "wideners", "backend": "wide", "models": ["stamp"]},
    ],
    "access": {
        "signed_in": [{"models": "*", "allow": "run"}],
        "groups": {"owners": [{"models": "stamp", "allow": "admin"}]},
    },
}
STAMP_SPEC = """command: [python, stamp.py]
params:
  type: object
  properties:
    tag: {type: string, default: ""}
    seconds: {type: number, default: 0}
    log: {type: string, default: "", description: "a file to append when and where it ran to"}
"""
# Each execution appends its pid and the times its process began and ended its work.
STAMP = """import json, os, time
from modelrunner import job

params = job.params()
began = time.time()
time.sleep(params["seconds"])
ended = time.time()
if params["log"]:
    with open(params["log"], "a") as log:
        log.write(json.dumps({"tag": params["tag"], "pid": os.getpid(), "began": began, "ended": ended}) + "\\n")
"""


@pytest.fixture
def workspace(workspace: Path) -> Path:
    """The test workspace with the routing above, ``stamp`` (no default backend), ``pinned``
    (``backend: narrow``) and the ``regional`` pipeline."""
    (workspace / "modelrunner.yaml").write_text(yaml.safe_dump(ROUTED, sort_keys=False))
    write_model(workspace, "stamp", STAMP_SPEC, {"stamp.py": STAMP})
    write_model(workspace, "pinned", STAMP_SPEC + "backend: narrow\n", {"stamp.py": STAMP})
    shutil.copytree(TESTS / "pipeline_model", workspace / "regional")
    return workspace


@pytest.fixture
def people(client: TestClient, platform: Platform) -> dict[str, dict[str, str]]:
    """Authorization headers by user name; ``client`` alone is the site admin."""
    groups = {"alice": ["narrowers"], "bob": ["wideners"], "carol": [], "dave": ["owners"]}
    return {name: bearer(add_user(platform.database, name, groups=member_of)) for name, member_of in groups.items()}


def post(client: TestClient, model: str, headers: dict[str, str], **body: Any) -> Any:
    """The response to POSTing a run as the user of ``headers`` (the site admin when empty)."""
    return client.post(f"/api/v1/models/{model}/runs", json=body, headers=headers)


def submitted(client: TestClient, model: str, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = post(client, model, headers, **body)
    assert response.status_code in (200, 201), response.text
    run: dict[str, Any] = response.json()
    return run


def routed(run: dict[str, Any]) -> tuple[str, str, str | None]:
    return run["backend"], run["backend_rule"], run["submitted_by"]


def executions(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def most_at_once(executions: list[dict[str, Any]]) -> int:
    """The most executions whose [began, ended] overlap at any instant."""
    # At the same instant an end comes before a begin: back-to-back is not at once.
    moments = sorted([(e["began"], 1) for e in executions] + [(e["ended"], -1) for e in executions])
    running = most = 0
    for _, change in moments:
        running += change
        most = max(most, running)
    return most


def test_groups_the_model_and_the_workspace_route_runs_and_each_records_which_did(
    client: TestClient, people: dict[str, dict[str, str]]
) -> None:
    cases = [
        ("alice", "stamp", ("narrow", "routing:narrowers", "alice")),
        ("bob", "stamp", ("wide", "routing:wideners", "bob")),
        ("bob", "pinned", ("narrow", "model", "bob")),  # bob's group routes only `stamp`
        ("carol", "stamp", ("wide", "workspace", "carol")),
        ("carol", "pinned", ("narrow", "model", "carol")),
    ]
    ids = []
    for number, (name, model, expected) in enumerate(cases):
        run = submitted(client, model, people[name], params={"tag": str(number)})
        assert routed(run) == expected
        ids.append(run["id"])

    for run_id, (_, _, expected) in zip(ids, cases, strict=True):
        run = wait_for_run(client.get, run_id)
        assert run["status"] == "succeeded", run["error"]
        assert routed(run) == expected
        assert [a["backend"] for a in run["attempts"]] == [expected[0]]
    listed = {item["id"]: routed(item) for item in client.get("/api/v1/runs").json()["items"]}
    assert [listed[run_id] for run_id in ids] == [expected for _, _, expected in cases]


def test_each_backend_runs_its_own_queue_with_its_own_slots(
    client: TestClient, people: dict[str, dict[str, str]], platform: Platform, settings: Settings, tmp_path: Path
) -> None:
    narrow_log, wide_log = tmp_path / "narrow.jsonl", tmp_path / "wide.jsonl"
    # The narrow queue first: the wide backend must not wait behind it.
    narrow = [
        submitted(client, "stamp", people["alice"], params={"tag": f"n{i}", "seconds": 1, "log": str(narrow_log)})
        for i in range(3)
    ]
    wide = [
        submitted(client, "stamp", people["bob"], params={"tag": f"w{i}", "seconds": 1, "log": str(wide_log)})
        for i in range(4)
    ]
    for run in narrow + wide:
        finished = wait_for_run(client.get, run["id"])
        assert finished["status"] == "succeeded", finished["error"]
        assert [a["backend"] for a in finished["attempts"]] == [run["backend"]]

    on_narrow, on_wide = executions(narrow_log), executions(wide_log)
    assert sorted(e["tag"] for e in on_narrow) == ["n0", "n1", "n2"]
    assert sorted(e["tag"] for e in on_wide) == ["w0", "w1", "w2", "w3"]
    assert most_at_once(on_narrow) == 1
    assert most_at_once(on_wide) == 2
    assert len({e["pid"] for e in on_narrow + on_wide}) == 7
    # Wide runs went while narrow ones still waited for their one slot.
    assert min(e["began"] for e in on_wide) < max(e["began"] for e in on_narrow)
    # Each local backend takes twice its slots (the extra ones wait prepared); `spare` has --slots.
    assert platform.backends["narrow"].free_slots() == 2
    assert platform.backends["spare"].free_slots() == 2 * settings.local_slots


def test_a_backend_is_chosen_by_an_admin_of_the_model_or_a_group_routed_there_and_refused_to_others(
    client: TestClient, people: dict[str, dict[str, str]], platform: Platform
) -> None:
    site_admin = submitted(client, "pinned", {}, params={"tag": "a"}, backend="spare")
    model_admin = submitted(client, "stamp", people["dave"], params={"tag": "d"}, backend="narrow")
    routed_there = submitted(client, "stamp", people["alice"], params={"tag": "a"}, backend="narrow")
    assert routed(site_admin) == ("spare", "request", "admin")
    assert routed(model_admin) == ("narrow", "request", "dave")
    assert routed(routed_there) == ("narrow", "request", "alice")
    for run in (site_admin, model_admin, routed_there):
        finished = wait_for_run(client.get, run["id"])
        assert finished["status"] == "succeeded", finished["error"]
        assert [a["backend"] for a in finished["attempts"]] == [run["backend"]]

    before = stored_counts(platform)
    refused = post(client, "stamp", people["alice"], params={"tag": "x"}, backend="wide")
    assert refused.status_code == 403
    assert refused.json()["detail"] == (
        "choosing backend 'wide' for model 'stamp' needs 'admin' on the model, or a routing rule in "
        "modelrunner.yaml that sends it there for one of alice's groups; alice may choose: narrow"
    )
    not_admin_here = post(client, "pinned", people["dave"], params={"tag": "x"}, backend="narrow")
    assert not_admin_here.status_code == 403
    assert "dave may choose none" in not_admin_here.json()["detail"]
    unknown = post(client, "stamp", {}, params={"tag": "x"}, backend="gpu")
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["loc"] == ["body", "backend"]
    assert unknown.json()["errors"] == [
        {"field": "backend", "message": "unknown backend 'gpu' (backends: narrow, spare, wide)"}
    ]
    assert stored_counts(platform) == before  # nothing written when refused


def test_an_identical_request_routed_elsewhere_joins_or_hits_the_cache_and_a_rerun_is_routed_anew(
    client: TestClient, people: dict[str, dict[str, str]]
) -> None:
    params = {"tag": "shared", "seconds": 1}
    first = submitted(client, "stamp", people["alice"], params=params)
    joined = submitted(client, "stamp", people["bob"], params=params)  # bob's runs go to wide
    assert joined["submission"] == "joined"
    assert joined["id"] == first["id"]
    assert routed(joined) == ("narrow", "routing:narrowers", "alice")
    assert wait_for_run(client.get, first["id"])["status"] == "succeeded"

    hit = post(client, "stamp", people["bob"], params=params)
    assert hit.status_code == 200
    assert hit.json()["source_run_id"] == first["id"]
    # The hit is bob's, and shows where its result was computed.
    assert routed(hit.json()) == ("narrow", "routing:narrowers", "bob")

    rerun = client.post(f"/api/v1/runs/{first['id']}/rerun", headers=people["bob"])
    assert rerun.status_code == 201, rerun.text
    assert routed(rerun.json()) == ("wide", "routing:wideners", "bob")
    again = wait_for_run(client.get, rerun.json()["id"])
    assert [a["backend"] for a in again["attempts"]] == ["wide"]


def test_the_steps_of_a_pipeline_run_where_it_was_routed_as_its_submitters(
    client: TestClient, people: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    pipeline = submitted(client, "regional", people["alice"], params={"ledger": str(tmp_path / "ledger.txt")})
    assert routed(pipeline) == ("narrow", "routing:narrowers", "alice")
    assert wait_for_run(client.get, pipeline["id"], timeout=60)["status"] == "succeeded"

    steps = client.get("/api/v1/runs", params={"parent": pipeline["id"], "limit": 100}).json()["items"]
    assert len(steps) == 8  # five regions, check, summarise, publish
    for step in steps:
        assert routed(step) == ("narrow", "routing:narrowers", "alice")
        assert [a["backend"] for a in get_run(client, step["id"])["attempts"]] == ["narrow"]


def test_scheduled_runs_have_no_submitter_and_go_to_the_model_default_or_the_workspace_default(
    platform: Platform, workspace: Path
) -> None:
    for model in ("stamp", "pinned"):
        path = workspace / model / "model.yaml"
        spec = yaml.safe_load(path.read_text())
        spec["schedules"] = [{"name": "hourly", "cron": "0 * * * *"}]
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
    migrate.upgrade(platform.database)  # nothing started: the runs stay queued where routing put them
    now = [dt.datetime(2024, 5, 1, 10, 10, tzinfo=dt.UTC)]
    scheduler = Scheduler(platform.database, platform.workspace, platform.submitter, clock=lambda: now[0])
    scheduler.tick()  # first seen
    now[0] += dt.timedelta(hours=1)

    assert scheduler.tick() == 2

    with platform.database.read() as session:
        runs = {run.model_name: run for run in session.scalars(select(RunRow))}
    assert {name: (run.backend, run.backend_rule, run.submitted_by) for name, run in runs.items()} == {
        "pinned": ("narrow", "model", None),
        "stamp": ("wide", "workspace", None),
    }
    assert runs["stamp"].origin == "schedule:stamp/hourly#0"
    platform.database.dispose()


def test_a_backend_declared_after_the_server_started_waits_for_a_restart(
    platform: Platform, settings: Settings, workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    workspace_file = workspace / "modelrunner.yaml"
    declared = yaml.safe_load(workspace_file.read_text())
    with_later = {**declared, "backends": {**declared["backends"], "later": {"type": "local", "slots": 1}}}
    caplog.set_level(logging.WARNING, logger="modelrunner.platform")
    with admin_client(platform) as client:
        workspace_file.write_text(yaml.safe_dump(with_later, sort_keys=False))
        run = submit(client, "stamp", {"tag": "later"}, backend="later")
        assert routed(run) == ("later", "request", "admin")
        assert "waits in the queue for backend 'later', which this server does not run" in caplog.text
        # Polled many times over (poll_seconds 0.2), and claimed by no other backend.
        with pytest.raises(AssertionError):
            wait_until(lambda: get_run(client, run["id"])["status"] != "queued", 1.5, "claimed")
        later = backends_of(client)["later"]
        assert (later["type"], later["served"], later["healthy"], later["queued"]) == ("local", False, False, 1)
        assert "restart `modelrunner serve`" in later["problem"]
        assert backends_of(client)["wide"]["healthy"]

    caplog.clear()
    workspace_file.write_text(yaml.safe_dump(declared, sort_keys=False))  # declared no more
    with admin_client(Platform(settings)) as client:
        assert "1 queued run(s) wait for backend 'later', which this server does not run" in caplog.text
        assert get_run(client, run["id"])["status"] == "queued"
        later = backends_of(client)["later"]  # declared no more, and still a run waits for it
        assert (later["type"], later["queued"]) == ("unknown", 1) and "not declared" in later["problem"]

    workspace_file.write_text(yaml.safe_dump(with_later, sort_keys=False))
    with admin_client(Platform(settings)) as client:
        finished = wait_for_run(client.get, run["id"])
    assert finished["status"] == "succeeded", finished["error"]
    assert [a["backend"] for a in finished["attempts"]] == ["later"]


def backends_of(client: TestClient) -> dict[str, dict[str, Any]]:
    response = client.get("/api/v1/backends")
    assert response.status_code == 200, response.text
    return {backend["name"]: backend for backend in response.json()}


def test_backends_list_their_running_attempts_and_queued_runs(client: TestClient, tmp_path: Path) -> None:
    assert list(backends_of(client)) == ["wide", "narrow", "spare"]  # as declared
    # The runs outlast the test (they are cancelled at its end), so none ends while it counts.
    runs = [submit(client, "pinned", {"tag": str(n), "seconds": 120}) for n in range(3)]
    wait_until(lambda: get_run(client, runs[0]["id"])["status"] == "running", 10, "the first run")
    # narrow has 1 slot and holds a second attempt ready to start: 2 attempts, 1 run waiting.
    narrow = wait_until(lambda: (b := backends_of(client)["narrow"])["running"] == 2 and b, 10, "a second attempt")
    assert (narrow["running"], narrow["queued"], narrow["healthy"]) == (2, 1, True)
    assert backends_of(client)["wide"]["running"] == 0
    for run in runs:
        client.post(f"/api/v1/runs/{run['id']}/cancel")
    wait_until(lambda: backends_of(client)["narrow"]["running"] == 0, 10, "the attempts to stop")


def test_run_backend_on_the_command_line_and_runs_show_tells_where_and_why(server: Server) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "modelrunner", *args], env=server.env, capture_output=True, text=True, timeout=60
        )

    ran = cli("run", "pinned", "-p", "tag=cli", "--backend", "spare", "--wait", "--json")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    run = json.loads(ran.stdout)
    assert routed(run) == ("spare", "request", "admin")

    shown = cli("runs", "show", str(run["id"]))
    assert shown.returncode == 0, shown.stderr
    lines = [" ".join(line.replace("│", " ").split()) for line in shown.stdout.splitlines()]
    assert any("submitted by admin" in line for line in lines), shown.stdout
    assert any("backend spare (named in the request)" in line for line in lines), shown.stdout

    routed_by_model = cli("run", "pinned", "-p", "tag=model", "--wait", "--json")
    assert routed(json.loads(routed_by_model.stdout)) == ("narrow", "model", "admin")
    shown = cli("runs", "show", str(json.loads(routed_by_model.stdout)["id"]))
    assert "backend narrow (the model's default)" in " ".join(shown.stdout.replace("│", " ").split())

    listed = cli("backends", "list")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()]
    for name in ("wide", "narrow", "spare"):
        assert [name, "local", "ok", "0", "0"] in [[c for c in row if c != "│"] for row in rows], listed.stdout

    unknown = cli("run", "pinned", "--backend", "gpu")
    assert unknown.returncode != 0
    assert "unknown backend 'gpu' (backends: narrow, spare, wide)" in unknown.stdout + unknown.stderr
    assert "Traceback" not in unknown.stdout + unknown.stderr
