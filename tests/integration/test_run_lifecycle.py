"""A run from submit to result as a user follows it: status, progress, events, logs, outputs."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

from fastapi.testclient import TestClient

from tests.conftest import wait_for_run
from tests.integration.runs_api import (
    ISO_UTC,
    events,
    get_run,
    logs,
    submit,
    wait_until,
    write_model,
)


def parse_time(value: str) -> dt.datetime:
    assert ISO_UTC.match(value), value
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_a_succeeded_run_shows_everything_about_it(client: TestClient) -> None:
    submitted = submit(client, "sleeper", {"seconds": 0.3, "tag": "fields"})

    run = wait_for_run(client.get, submitted["id"])

    assert run["status"] == "succeeded"
    assert run["error"] is None
    assert run["model"] == "sleeper"
    assert run["model_version"] == client.get("/api/v1/models/sleeper").json()["version"]
    assert run["cache_key"] == submitted["cache_key"]
    assert len(run["cache_key"]) == 64
    assert run["params"] == {"seconds": 0.3, "tag": "fields", "counter": "", "ignore_sigterm": False}
    assert run["progress"] == {"fraction": 1.0, "message": "done"}
    created, started, finished = (parse_time(run[k]) for k in ("created_at", "started_at", "finished_at"))
    assert created <= started <= finished
    assert finished - started >= dt.timedelta(seconds=0.25)
    [attempt] = run["attempts"]
    assert attempt["number"] == 1
    assert attempt["status"] == "succeeded"
    assert attempt["backend"] == "local"
    assert attempt["exit_code"] == 0
    assert attempt["error"] is None
    for key in ("created_at", "started_at", "finished_at"):
        parse_time(attempt[key])


def test_outputs_are_listed_with_size_and_sha256_of_what_downloads(client: TestClient) -> None:
    run = wait_for_run(client.get, submit(client, "sleeper", {"seconds": 0.1, "tag": "outputs"})["id"])

    [output] = run["outputs"]
    assert output["path"] == "done.txt"
    assert client.get(f"/api/v1/runs/{run['id']}/outputs").json() == run["outputs"]
    response = client.get(output["url"])
    assert response.status_code == 200
    assert response.content == b"slept 0.1\n"
    assert output["size"] == len(response.content)
    assert output["sha256"] == hashlib.sha256(response.content).hexdigest()
    assert response.headers["x-sha256"] == output["sha256"]
    assert response.headers["content-type"].startswith("text/plain")


def test_outputs_in_subfolders_and_of_any_content(client: TestClient, workspace: Path) -> None:
    write_model(
        workspace,
        "writer",
        'command: ["python", "writer.py"]\n',
        {
            "writer.py": (
                "import os, pathlib\n"
                "out = pathlib.Path(os.environ['MODELRUNNER_OUTPUTS'])\n"
                "(out / 'maps' / 'be').mkdir(parents=True)\n"
                "(out / 'maps' / 'be' / 'rt map.bin').write_bytes(bytes(range(256)) * 1000)\n"
                "(out / 'summary.json').write_text('{\"rt\": 1.1}')\n"
            )
        },
    )

    run = wait_for_run(client.get, submit(client, "writer")["id"])

    assert run["status"] == "succeeded", run["error"]
    assert [o["path"] for o in run["outputs"]] == ["maps/be/rt map.bin", "summary.json"]
    for output in run["outputs"]:
        content = client.get(output["url"]).content
        assert (len(content), hashlib.sha256(content).hexdigest()) == (output["size"], output["sha256"])
    assert run["outputs"][0]["size"] == 256_000


def test_unknown_run_and_unknown_output(client: TestClient) -> None:
    run = wait_for_run(client.get, submit(client, "noop")["id"])

    assert client.get("/api/v1/runs/999999").status_code == 404
    assert client.get("/api/v1/runs/999999/events").status_code == 404
    assert client.get("/api/v1/runs/999999/logs").status_code == 404
    assert client.get("/api/v1/runs/999999/outputs").status_code == 404
    missing = client.get(f"/api/v1/runs/{run['id']}/outputs/nothing.csv")
    assert missing.status_code == 404
    assert "nothing.csv" in missing.json()["detail"]
    assert client.get(f"/api/v1/runs/{run['id']}/outputs/../../etc/passwd").status_code == 404


def test_progress_is_visible_while_the_run_runs(client: TestClient) -> None:
    run_id = submit(client, "sleeper", {"seconds": 2, "tag": "watch"})["id"]

    def in_progress() -> dict[str, object] | None:
        run = get_run(client, run_id)
        fraction = run["progress"]["fraction"]
        return run if run["status"] == "running" and fraction and 0 < fraction < 1 else None

    seen = wait_until(in_progress, 10, "progress between 0 and 1 while running")

    assert seen["progress"]["message"].startswith("step ")  # type: ignore[index]
    assert seen["started_at"] is not None
    assert seen["finished_at"] is None
    assert wait_for_run(client.get, run_id)["status"] == "succeeded"


def test_events_record_every_transition_in_order_with_progress_between(client: TestClient) -> None:
    run_id = submit(client, "sleeper", {"seconds": 0.5, "tag": "events"})["id"]
    wait_for_run(client.get, run_id)

    items = events(client, run_id)

    assert [i["id"] for i in items] == sorted(i["id"] for i in items)
    statuses = [i["data"] for i in items if i["type"] == "run.status"]
    assert [(s["from"], s["to"]) for s in statuses] == [
        (None, "queued"),
        ("queued", "starting"),
        ("starting", "running"),
        ("running", "succeeded"),
    ]
    kinds = [i["type"] if i["type"] != "run.status" else i["data"]["to"] for i in items]
    progress = [i["data"] for i in items if i["type"] == "run.progress"]
    assert len(progress) >= 5
    assert kinds.index("running") < kinds.index("run.progress")
    assert len(kinds) - 1 - kinds[::-1].index("run.progress") < kinds.index("succeeded")
    fractions = [p["fraction"] for p in progress]
    assert fractions == sorted(fractions)
    assert progress[-1] == {"fraction": 1.0, "message": "done"}
    assert {"fraction": 0.0, "message": "step 1 of 10"} in progress
    for item in items:
        parse_time(item["created_at"])
    assert "::progress:: 0.5000 step 6 of 10" in logs(client, run_id)  # progress lines are logged too


def test_events_can_be_followed_with_after(client: TestClient) -> None:
    run_id = submit(client, "noop", {"n": 11})["id"]
    wait_for_run(client.get, run_id)
    everything = events(client, run_id)

    page = client.get(f"/api/v1/runs/{run_id}/events", params={"limit": 2}).json()
    rest = client.get(f"/api/v1/runs/{run_id}/events", params={"after": page["next_after"]}).json()

    assert page["items"] == everything[:2]
    assert rest["items"] == everything[2:]
    assert client.get(f"/api/v1/runs/{run_id}/events", params={"after": rest["next_after"]}).json() == {
        "items": [],
        "next_after": rest["next_after"],
    }


def test_logs_hold_the_models_stdout_and_stderr(client: TestClient, workspace: Path) -> None:
    write_model(
        workspace,
        "talker",
        'command: ["python", "talker.py"]\n',
        {"talker.py": "import sys\nprint('hello from stdout')\nprint('and from stderr', file=sys.stderr)\n"},
    )
    run_id = submit(client, "talker")["id"]
    assert wait_for_run(client.get, run_id)["status"] == "succeeded"

    response = client.get(f"/api/v1/runs/{run_id}/logs")

    assert response.status_code == 200
    assert "hello from stdout" in response.text
    assert "and from stderr" in response.text
    assert response.headers["x-run-status"] == "succeeded"
    offset = int(response.headers["x-log-offset"])
    assert offset == len(response.content)
    tail = client.get(f"/api/v1/runs/{run_id}/logs", params={"offset": 6})
    assert tail.content == response.content[6:]
    assert int(tail.headers["x-log-offset"]) == offset
    assert client.get(f"/api/v1/runs/{run_id}/logs", params={"offset": offset}).content == b""


def test_the_model_sees_the_contract_variables(client: TestClient, workspace: Path) -> None:
    write_model(
        workspace,
        "env",
        'command: ["python", "env.py"]\nparams: {type: object, properties: {x: {type: integer, default: 7}}}\n',
        {
            "env.py": (
                "import json, os, pathlib\n"
                "names = ['MODELRUNNER_RUN_ID', 'MODELRUNNER_PARAMS', 'MODELRUNNER_INPUTS',"
                " 'MODELRUNNER_OUTPUTS', 'MODELRUNNER_CHECKPOINT']\n"
                "seen = {n: os.environ.get(n) for n in names}\n"
                "seen['params'] = json.loads(pathlib.Path(seen['MODELRUNNER_PARAMS']).read_text())\n"
                "seen['cwd_has_script'] = pathlib.Path('env.py').exists()\n"
                "(pathlib.Path(seen['MODELRUNNER_OUTPUTS']) / 'env.json').write_text(json.dumps(seen))\n"
            )
        },
    )

    run = wait_for_run(client.get, submit(client, "env")["id"])

    assert run["status"] == "succeeded", run["error"]
    seen = client.get(f"/api/v1/runs/{run['id']}/outputs/env.json").json()
    assert seen["MODELRUNNER_RUN_ID"] == str(run["id"])
    assert seen["params"] == {"x": 7}
    assert seen["cwd_has_script"] is True
    assert all(seen[n] for n in ("MODELRUNNER_INPUTS", "MODELRUNNER_OUTPUTS", "MODELRUNNER_CHECKPOINT"))
