"""Managed datasets (``source: managed``) through a real server: every change a version with its
author and message, write rules per path, the diff between versions, and a model reading one
folder of a version chosen by a parameter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelrunner.settings import Settings
from tests.conftest import empty_database, wait_for_run
from tests.identities import add_user, bearer
from tests.integration.runs_api import wait_until, write_model
from tests.integration.served import Served

pytestmark = pytest.mark.xdist_group("managed_datasets")  # one server for the module's tests

WORKSPACE = """\
name: scenarios
datasets:
  paris:
    source: managed
    description: transport scenarios of Paris, one folder each
    write:
      "base/**": [planners]
      "**": [analysts]
access:
  groups:
    planners: [{models: "*", allow: run}]
    analysts: [{models: "*", allow: run}]
"""

READER = (
    "import json, os, pathlib\n"
    "inputs = pathlib.Path(os.environ['MODELRUNNER_INPUTS'])\n"
    "listing = sorted(str(p.relative_to(inputs)) for p in inputs.rglob('*') if p.is_file())\n"
    "pathlib.Path(os.environ['MODELRUNNER_OUTPUTS'], 'seen.json').write_text(json.dumps(listing))\n"
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("managed")
    workspace = root / "workspace"
    workspace.mkdir()
    (workspace / "modelrunner.yaml").write_text(WORKSPACE, encoding="utf-8")
    write_model(
        workspace,
        "assignment",
        "command: [python, read.py]\n"
        "params:\n  type: object\n  properties:\n    scenario: {type: string, default: base}\n"
        "inputs:\n  scenario: {dataset: paris, path: params.scenario}\n"
        "outputs:\n  - path: seen.json\n",
        {"read.py": READER},
    )
    write_model(
        workspace,
        "refresh",
        "command: [python, read.py]\n"
        "inputs:\n  scenarios: paris\n"
        "triggers:\n  - {name: on-change, on: dataset.version_added, dataset: paris}\n"
        "outputs:\n  - path: seen.json\n",
        {"read.py": READER},
    )
    with empty_database(root / "state") as url:
        settings = Settings(
            workspace=workspace,
            data_dir=root / "state",
            database_url=url,
            local_slots=2,
            poll_seconds=0.2,
            max_upload_bytes=32 * 1024,
        )
        started = Served(settings)
        try:
            yield started
        finally:
            started.stop()


@pytest.fixture(scope="module")
def people(served: Served) -> dict[str, dict[str, str]]:
    database = served.platform.database
    return {
        "planner": bearer(add_user(database, "pia", groups=["planners", "analysts"])),
        "analyst": bearer(add_user(database, "ali", groups=["analysts"])),
    }


def put(served: Served, who: dict[str, str], path: str, content: bytes, **query: str) -> httpx.Response:
    return served.http.put(f"/api/v1/datasets/paris/files/{path}", content=content, params=query, headers=who)


def test_changes_are_versions_with_author_and_message_and_write_rules_hold(
    served: Served, people: dict[str, dict[str, str]]
) -> None:
    planner, analyst = people["planner"], people["analyst"]
    first = put(served, planner, "base/links.geojson", b'{"links": 1}', message="the base network")
    assert first.status_code == 201, first.text
    v1 = first.json()["version"]
    assert v1["author"] == "pia" and v1["message"] == "the base network" and first.json()["parent"] is None

    refused = put(served, analyst, "base/links.geojson", b'{"links": 666}', message="oops")
    assert refused.status_code == 403, refused.text
    assert "base/**" in refused.json()["detail"] and "planners" in refused.json()["detail"]

    second = put(served, analyst, "x/links.geojson", b'{"links": 2}', message="scenario x")
    assert second.status_code == 201, second.text
    v2 = second.json()["version"]
    assert second.json()["parent"] == v1["version"] and v2["author"] == "ali"

    batch = served.http.post(
        "/api/v1/datasets/paris/files",
        data={"folder": "x", "message": "x: demand and a new network", "remove": ["x/links.geojson"]},
        files=[("file", ("od.csv", b"a,b,3\n")), ("file", ("net/links.geojson", b'{"links": 3}'))],
        headers=analyst,
    )
    assert batch.status_code == 201, batch.text
    v3 = batch.json()["version"]

    same = put(served, analyst, "x/od.csv", b"a,b,3\n")
    assert same.status_code == 200 and same.json()["version"] is None, same.text
    stale = put(served, analyst, "x/od.csv", b"a,b,4\n", base=v1["version"])
    assert stale.status_code == 409 and "changed since" in stale.json()["detail"], stale.text
    for hostile in ["../escape.txt", "x/%2e%2e/%2e%2e/escape.txt"]:
        answer = put(served, analyst, hostile, b"no")
        assert answer.status_code in (400, 404, 422), (hostile, answer.text)
    under_a_file = put(served, analyst, "x/od.csv/more.txt", b"no")
    assert under_a_file.status_code == 422 and "is a file of the dataset" in under_a_file.text, under_a_file.text
    too_large = put(served, analyst, "x/big.bin", b"x" * (32 * 1024 + 1))
    assert too_large.status_code == 413 and "max_upload_bytes" in too_large.json()["detail"], too_large.text

    # Each change is a dataset.version_added event: a model triggered by it computes on the new version.
    def refreshed() -> list[dict[str, Any]] | None:
        runs = served.http.get("/api/v1/runs", params={"model": "refresh", "limit": 50}).json()["items"]
        done = [r for r in runs if r["status"] == "succeeded" and r["inputs"]["scenarios"]["version"] == v3["version"]]
        return done or None

    newest_run = wait_until(refreshed, 30, "a triggered run on the newest version")[0]
    seen = served.http.get(f"/api/v1/runs/{newest_run['id']}/outputs/seen.json").json()
    assert seen == ["scenarios/base/links.geojson", "scenarios/x/net/links.geojson", "scenarios/x/od.csv"]

    kept = served.http.delete("/api/v1/datasets/paris/versions")
    assert kept.status_code == 409 and "managed" in kept.json()["detail"], kept.text
    versions = served.http.get("/api/v1/datasets/paris/versions").json()
    assert [(v["author"], v["message"]) for v in versions[:3]] == [
        ("ali", "x: demand and a new network"),
        ("ali", "scenario x"),
        ("pia", "the base network"),
    ]
    changes = served.http.get("/api/v1/datasets/paris/diff", params={"from": v1["version"], "to": v3["version"]})
    assert changes.json() == {
        "from": v1["version"],
        "to": v3["version"],
        "added": ["x/net/links.geojson", "x/od.csv"],
        "removed": [],
        "changed": [],
    }
    changes = served.http.get("/api/v1/datasets/paris/diff", params={"from": v2["version"], "to": v3["version"]})
    assert changes.json()["removed"] == ["x/links.geojson"] and changes.json()["added"] == [
        "x/net/links.geojson",
        "x/od.csv",
    ]


def test_a_run_sees_only_the_folder_its_parameter_names(served: Served, people: dict[str, dict[str, str]]) -> None:
    analyst = people["analyst"]
    assert put(served, analyst, "y/od.csv", b"y\n", message="scenario y").status_code in (200, 201)
    answer = served.http.post("/api/v1/models/assignment/runs", json={"params": {"scenario": "y"}}, headers=analyst)
    assert answer.status_code == 201, answer.text
    run = wait_for_run(served.http.get, answer.json()["id"])
    assert run["status"] == "succeeded", run
    seen = served.http.get(f"/api/v1/runs/{run['id']}/outputs/seen.json").json()
    assert seen == ["scenario/od.csv"]
    unknown = served.http.post("/api/v1/models/assignment/runs", json={"params": {"scenario": "nowhere"}})
    assert unknown.status_code == 422, unknown.text
    assert "nowhere" in unknown.text and "params.scenario" in unknown.text


def test_data_put_with_the_cli(served: Served, people: dict[str, dict[str, str]], tmp_path: Path) -> None:
    scenario = tmp_path / "z"
    (scenario / "net").mkdir(parents=True)
    (scenario / "net" / "links.geojson").write_text('{"links": "z"}')
    (scenario / "params.json").write_text('{"growth": 0.1}')
    env = {**os.environ, "MODELRUNNER_SERVER": served.url, "MODELRUNNER_TOKEN": people["analyst"]["Authorization"][7:]}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "modelrunner", *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert "Traceback" not in done.stdout + done.stderr, done.stderr
        return done

    assert put(served, people["analyst"], "z0/keep.txt", b"so that z has a parent").status_code in (200, 201)
    made = cli("data", "put", "paris", str(scenario), "-m", "scenario z", "--json")
    assert made.returncode == 0, made.stderr
    version = json.loads(made.stdout)["version"]
    assert version["author"] == "ali" and version["message"] == "scenario z"
    detail = served.http.get(f"/api/v1/datasets/paris/versions/{version['version']}").json()
    files = {f["path"] for f in detail["files"]}
    assert {"z/net/links.geojson", "z/params.json"} <= files
    removed = cli("data", "rm", "paris", "z/params.json", "-m", "no params for z", "--json")
    assert removed.returncode == 0, removed.stderr
    after = json.loads(removed.stdout)["version"]
    detail = served.http.get(f"/api/v1/datasets/paris/versions/{after['version']}").json()
    assert "z/params.json" not in {f["path"] for f in detail["files"]} and after["message"] == "no params for z"
    gone = cli("data", "rm", "paris", "z/params.json")
    assert gone.returncode == 1 and "no such file" in gone.stderr, gone.stderr
    listed = cli("data", "versions", "paris")
    assert listed.returncode == 0 and "ali" in listed.stdout and "scenario z" in listed.stdout, listed.stdout
    shown = cli("data", "diff", "paris", version["parent"][:8], version["version"][:8])
    assert "+ z/net/links.geojson" in shown.stdout and "+ z/params.json" in shown.stdout, shown.stdout
    refused = cli("data", "put", "paris", str(scenario / "params.json"), "--to", "base", "-m", "mine now")
    assert refused.returncode == 1 and "base/**" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


def test_concurrent_changes_each_get_a_version_or_a_conflict_and_a_failed_one_none(
    served: Served, people: dict[str, dict[str, str]]
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    analyst = people["analyst"]
    before = len(served.http.get("/api/v1/datasets/paris/versions").json())

    def write(number: int) -> httpx.Response:
        with httpx.Client(base_url=served.url, headers=analyst, timeout=30) as http:
            return http.put(f"/api/v1/datasets/paris/files/c/{number}.txt", content=f"{number}\n".encode())

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(write, range(6)))
    assert {a.status_code for a in answers} <= {201, 409}, [a.text for a in answers]
    made = [n for n, a in enumerate(answers) if a.status_code == 201]
    assert made, "at least the first change is recorded"
    for answer in answers:
        if answer.status_code == 409:
            assert "try again" in answer.json()["detail"]
    versions = served.http.get("/api/v1/datasets/paris/versions").json()
    assert len(versions) == before + len(made)
    newest = served.http.get(f"/api/v1/datasets/paris/versions/{versions[0]['version']}").json()
    in_c = sorted(f["path"] for f in newest["files"] if f["path"].startswith("c/"))
    assert in_c == sorted(f"c/{n}.txt" for n in made)

    # A change that fails half-way (its second file would replace the folder c/) records nothing,
    # not even its first file.
    failed = served.http.post(
        "/api/v1/datasets/paris/files",
        data={"message": "half"},
        files=[("file", ("c/small.txt", b"fits")), ("file", ("c", b"not a folder"))],
        headers=analyst,
    )
    assert failed.status_code == 422 and "is a folder" in failed.text, failed.text
    assert len(served.http.get("/api/v1/datasets/paris/versions").json()) == len(versions)
    assert served.http.get("/api/v1/datasets/paris/syncs").json()[0]["status"] == "failed"
