"""An attempt's callback token: it reports that attempt's progress and log while the attempt
runs, and opens nothing else. A model also never sees the server's own MODELRUNNER_* settings."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.conftest import Server
from tests.integration.runs_api import wait_until, write_model

REPORTER = """\
import json, os, pathlib, time, urllib.error, urllib.request

def call(url, token, body=None):
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"},
        method="POST" if body is not None else "GET",
    )
    try:
        return urllib.request.urlopen(request, timeout=10).status
    except urllib.error.HTTPError as error:
        return error.code

time.sleep(1.5)  # the server records that the attempt runs; reports before that are ignored
url, token = os.environ["MODELRUNNER_CALLBACK_URL"], os.environ["MODELRUNNER_CALLBACK_TOKEN"]
server = url.split("/api/v1/")[0]
found = {
    "progress": call(url + "/progress", token, {"fraction": 0.5, "message": "halfway, by callback"}),
    "runs": call(server + "/api/v1/runs", token),
    "models": call(server + "/api/v1/models", token),
    "other_attempt": call(url.rsplit("/", 1)[0] + "/999999/progress", token, {"fraction": 0.1}),
    "other_attempt_log": call(url.rsplit("/", 1)[0] + "/999999/log?offset=0", token, "a line"),
    "settings": sorted(
        name for name in os.environ
        if name.startswith("MODELRUNNER_") and name not in ("MODELRUNNER_CALLBACK_URL", "MODELRUNNER_CALLBACK_TOKEN")
    ),
    "url": url,
    "token": token,
}
(pathlib.Path(os.environ["MODELRUNNER_OUTPUTS"]) / "found.json").write_text(json.dumps(found))
"""


def test_an_attempt_reports_progress_with_its_token_and_can_do_nothing_else(server: Server, tmp_path: Path) -> None:
    write_model(
        Path(server.env["MODELRUNNER_WORKSPACE"]),
        "reporter",
        'command: ["python", "reporter.py"]\noutputs:\n  - path: found.json\n',
        {"reporter.py": REPORTER},
    )
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
        run_id = http.post("/api/v1/models/reporter/runs", json={}).json()["id"]
        run = wait_until(
            lambda: (r := http.get(f"/api/v1/runs/{run_id}").json())["status"] in ("succeeded", "failed") and r,
            30,
            "the reporter run ends",
        )
        assert run["status"] == "succeeded", http.get(f"/api/v1/runs/{run_id}/logs").text
        found = json.loads(http.get(f"/api/v1/runs/{run_id}/outputs/found.json").content)
        events = http.get(f"/api/v1/runs/{run_id}/events").json()["items"]

    assert found["progress"] == 204
    progress = [e["data"] for e in events if e["type"] == "run.progress"]
    assert {"fraction": 0.5, "message": "halfway, by callback"} in progress
    assert (found["runs"], found["models"], found["other_attempt"], found["other_attempt_log"]) == (403,) * 4
    # The server's database URL, token and other settings stay with the server.
    assert found["settings"] == sorted(_CONTRACT)
    assert found["url"].startswith(server.url + "/api/v1/attempts/")

    # Spent once the attempt has ended.
    late = httpx.post(
        found["url"] + "/progress", json={"fraction": 0.9}, headers={"Authorization": f"Bearer {found['token']}"}
    )
    assert late.status_code == 401
    assert "has ended" in late.json()["detail"]
    late_log = httpx.post(
        found["url"] + "/log",
        params={"offset": 0},
        content=b"late",
        headers={"Authorization": f"Bearer {found['token']}"},
    )
    assert late_log.status_code == 401
    assert found["token"] not in late.text
    assert found["token"] not in (tmp_path / "server.log").read_text()


_CONTRACT = {
    "MODELRUNNER_RUN_ID",
    "MODELRUNNER_ATTEMPT",
    "MODELRUNNER_PARAMS",
    "MODELRUNNER_INPUTS",
    "MODELRUNNER_OUTPUTS",
    "MODELRUNNER_CHECKPOINT",
    "MODELRUNNER_FAILURE_NOTE",
}
