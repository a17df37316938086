"""Failed attempts keep what they wrote: the outputs folder of an attempt that failed, timed out or
was cancelled is kept as that attempt's partial outputs, listed and downloaded apart from the run's
outputs, and never used as a result (no outputs, no cache hit). HTML files a model wrote are served
so that they never run as a page of this site: downloads are sandboxed attachments, the inline
view of the run page a sandboxed document with a strict CSP."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from modelrunner.platform import Platform
from tests.conftest import wait_for_run
from tests.identities import add_user, bearer
from tests.integration.runs_api import logs, submit, wait_until, write_model
from tests.integration.test_web_pages import PASSWORD, signed_in

NOTES = b"step 1 done\nstep 2: diverged at t=17\n\x00\xff binary tail"
REPORT = "<html><body><h1>Report</h1><script>document.title = 'ran'</script></body></html>"

SCRIBBLER = """\
title: Writes its notes, then fails
command: ["python", "scribble.py"]
params:
  type: object
  properties:
    tag: {type: string, default: ""}
    sleep: {type: number, default: 0}
outputs:
  - path: result.csv
retries: 0
"""
SCRIBBLE = f"""\
import os, sys, time
from pathlib import Path
out = Path(os.environ["MODELRUNNER_OUTPUTS"])
(out / "notes.bin").write_bytes({NOTES!r})
(out / "report").mkdir()
(out / "report" / "index.html").write_text({REPORT!r})
os.symlink("/etc/hostname", out / "hostname")
print("wrote my notes", flush=True)
with open(os.environ["MODELRUNNER_PARAMS"]) as handle:
    import json
    time.sleep(json.load(handle)["sleep"])
sys.exit(4)
"""
SECOND_TRY = """\
title: Fails on its first attempt, having written a draft
command: ["python", "second.py"]
retries: {failed: 1}
outputs:
  - path: result.txt
"""
SECOND = """\
import sys
from modelrunner import job
marker = job.checkpoint() / "failed-once"
if not marker.exists():
    marker.write_text("x")
    (job.outputs() / "draft.txt").write_text("first attempt's draft\\n")
    sys.exit(1)
(job.outputs() / "result.txt").write_text("second attempt succeeded\\n")
"""
CHAIN = """\
title: A first step that fails once (leaving a draft), then a step that lists what it got
steps:
  first:
    command: ["python", "second.py"]
    retries: {failed: 1}
    outputs: [{path: result.txt}]
  listing:
    command: ["python", "listing.py"]
    needs: [first]
    outputs: [{path: listing.txt}]
"""
LISTING = """\
import os
from pathlib import Path
inputs = Path(os.environ["MODELRUNNER_INPUTS"])
found = sorted(str(p.relative_to(inputs)) for p in inputs.rglob("*") if p.is_file())
(Path(os.environ["MODELRUNNER_OUTPUTS"]) / "listing.txt").write_text("\\n".join(found))
"""
ACCESS = {
    "groups": {
        "modellers": [{"models": ["scribbler", "second_try"], "allow": "run"}],
        "others": [{"models": "noop", "allow": "run"}],
    }
}


@pytest.fixture
def workspace(workspace: Path) -> Path:
    write_model(workspace, "scribbler", SCRIBBLER, {"scribble.py": SCRIBBLE})
    write_model(workspace, "second_try", SECOND_TRY, {"second.py": SECOND})
    write_model(workspace, "chain", CHAIN, {"second.py": SECOND, "listing.py": LISTING})
    config = workspace / "modelrunner.yaml"
    config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "access": ACCESS}))
    return workspace


@pytest.fixture
def tokens(platform: Platform, client: TestClient) -> dict[str, dict[str, str]]:
    """API headers of a modeller (may run both models) and of someone who may not view them."""
    return {
        "modeller": bearer(add_user(platform.database, "mia", groups=["modellers"], password=PASSWORD)),
        "other": bearer(add_user(platform.database, "olaf", groups=["others"], password=PASSWORD)),
    }


@pytest.fixture
def failed(client: TestClient) -> dict[str, Any]:
    """A finished run of ``scribbler``: it wrote notes, a report and a symbolic link, then failed."""
    run = wait_for_run(client.get, submit(client, "scribbler")["id"])
    assert run["status"] == "failed", run
    return run


def test_a_failed_run_keeps_what_it_wrote_as_partial_outputs(client: TestClient, failed: dict[str, Any]) -> None:
    run_id = failed["id"]
    assert failed["outputs"] == []
    assert client.get(f"/api/v1/runs/{run_id}/outputs").json() == []
    assert client.get(f"/api/v1/runs/{run_id}/outputs/notes.bin").status_code == 404

    (attempt,) = failed["attempts"]
    listed = client.get(f"/api/v1/runs/{run_id}/attempts/1/outputs").json()
    assert attempt["partial_outputs"] == listed
    assert [f["path"] for f in listed] == ["notes.bin", "report/index.html"]  # the symbolic link is refused
    notes = listed[0]
    assert notes["size"] == len(NOTES) and notes["sha256"] == hashlib.sha256(NOTES).hexdigest()
    assert notes["url"] == f"/api/v1/runs/{run_id}/attempts/1/outputs/notes.bin"

    download = client.get(notes["url"])
    assert download.status_code == 200
    assert download.content == NOTES
    assert download.headers["x-sha256"] == notes["sha256"]
    assert download.headers["content-disposition"].startswith("attachment;")

    log = logs(client, run_id)
    assert "partial output hostname is not stored: it is a symbolic link (to /etc/hostname)" in log
    assert "kept 2 partial output(s) of this attempt: notes.bin, report/index.html" in log


def test_an_identical_request_is_not_answered_from_a_failed_run(client: TestClient, failed: dict[str, Any]) -> None:
    again = submit(client, "scribbler")
    assert again["id"] != failed["id"]
    assert again["cache_hit"] is False
    assert wait_for_run(client.get, again["id"])["status"] == "failed"


def test_a_retried_run_has_the_first_attempts_partial_outputs_and_the_seconds_result(client: TestClient) -> None:
    run = wait_for_run(client.get, submit(client, "second_try")["id"])
    assert run["status"] == "succeeded", run
    first, second = run["attempts"]
    assert (first["status"], second["status"]) == ("failed", "succeeded")
    assert [f["path"] for f in first["partial_outputs"]] == ["draft.txt"]
    assert second["partial_outputs"] == []
    assert [o["path"] for o in run["outputs"]] == ["result.txt"]
    assert client.get(first["partial_outputs"][0]["url"]).text == "first attempt's draft\n"
    assert client.get(f"/api/v1/runs/{run['id']}/attempts/2/outputs").json() == []
    # The cache answers from the run's result, and its result only.
    hit = submit(client, "second_try")
    assert hit["cache_hit"] is True
    assert [o["path"] for o in hit["outputs"]] == ["result.txt"]


def test_a_step_downstream_gets_the_upstream_result_never_its_partial_outputs(client: TestClient) -> None:
    pipeline = wait_for_run(client.get, submit(client, "chain")["id"], timeout=60)
    assert pipeline["status"] == "succeeded", pipeline
    steps = {step["name"]: step["run_ids"] for step in pipeline["steps"]}
    first = client.get(f"/api/v1/runs/{steps['first'][0]}").json()
    assert [f["path"] for f in first["attempts"][0]["partial_outputs"]] == ["draft.txt"]
    listing = client.get(f"/api/v1/runs/{steps['listing'][0]}/outputs/listing.txt").text
    assert listing == "first/result.txt"


def test_a_timed_out_attempt_keeps_its_partial_outputs(client: TestClient, workspace: Path) -> None:
    spec = (workspace / "scribbler" / "model.yaml").read_text() + "resources: {timeout: 1}\n"
    (workspace / "scribbler" / "model.yaml").write_text(spec)
    run = wait_for_run(client.get, submit(client, "scribbler", {"sleep": 60})["id"])
    assert run["status"] == "timed_out", run
    assert [f["path"] for f in run["attempts"][0]["partial_outputs"]] == ["notes.bin", "report/index.html"]
    assert run["outputs"] == []


def test_a_cancelled_attempt_keeps_its_partial_outputs(client: TestClient) -> None:
    run_id = submit(client, "scribbler", {"sleep": 60})["id"]
    wait_until(lambda: "wrote my notes" in logs(client, run_id), 30, "the model wrote its notes")
    assert client.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200
    # The run is cancelled at once; its attempt ends once its model stopped (SIGTERM, grace, SIGKILL).
    wait_until(
        lambda: client.get(f"/api/v1/runs/{run_id}").json()["attempts"][0]["status"] != "running", 30, "the stop"
    )
    run = client.get(f"/api/v1/runs/{run_id}").json()
    assert run["status"] == "cancelled" and run["outputs"] == []
    (attempt,) = run["attempts"]
    assert attempt["status"] == "cancelled"
    assert [f["path"] for f in attempt["partial_outputs"]] == ["notes.bin", "report/index.html"]


def test_who_may_not_view_the_model_finds_no_such_run(
    client: TestClient, failed: dict[str, Any], tokens: dict[str, dict[str, str]]
) -> None:
    base = f"/api/v1/runs/{failed['id']}/attempts/1/outputs"
    for path in (base, f"{base}/notes.bin", f"{base}/report/index.html"):
        refused = client.get(path, headers=tokens["other"])
        assert refused.status_code == 404, path
        assert refused.json()["detail"] == f"unknown run {failed['id']}"
        assert client.get(path, headers=tokens["modeller"]).status_code == 200, path


@pytest.mark.parametrize(
    ("path", "status", "names"),
    [
        ("attempts/2/outputs", 404, "has no attempt 2"),
        ("attempts/1/outputs/nothing.txt", 404, "has no partial output 'nothing.txt'"),
        ("attempts/0/outputs", 422, "number"),
        ("attempts/99999999999/outputs", 422, "number"),
    ],
)
def test_unknown_attempts_and_files_are_named(
    client: TestClient, failed: dict[str, Any], path: str, status: int, names: str
) -> None:
    response = client.get(f"/api/v1/runs/{failed['id']}/{path}")
    assert response.status_code == status
    assert names in response.text


def test_an_html_download_never_runs_as_a_page_of_the_site(client: TestClient, failed: dict[str, Any]) -> None:
    response = client.get(f"/api/v1/runs/{failed['id']}/attempts/1/outputs/report/index.html")
    assert response.text == REPORT
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["content-disposition"].startswith("attachment;")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"].startswith("sandbox;")


@pytest.fixture
def page(client: TestClient, tokens: dict[str, dict[str, str]]) -> TestClient:
    """A browser signed in as mia, on the running app."""
    return signed_in(TestClient(client.app, follow_redirects=False), "mia")


def test_the_run_page_frames_html_in_a_sandbox_served_with_a_strict_policy(
    page: TestClient, failed: dict[str, Any]
) -> None:
    run_id = failed["id"]
    shown = page.get(f"/runs/{run_id}").text
    assert "Partial outputs" in shown and "not the run's result" in shown
    view = f"/runs/{run_id}/attempts/1/view/report/index.html"
    assert '<iframe class="report-frame" sandbox referrerpolicy="no-referrer"' in shown and view in shown
    assert "allow-scripts" not in shown and "allow-same-origin" not in shown

    framed = page.get(view)
    assert framed.status_code == 200
    assert framed.text == REPORT
    assert framed.headers["content-type"] == "text/html; charset=utf-8"
    policy = [p.strip() for p in framed.headers["content-security-policy"].split(";")]
    assert policy[0] == "sandbox"  # no allow-scripts, no allow-same-origin: an opaque origin, nothing runs
    assert "default-src 'none'" in policy and "frame-ancestors 'self'" in policy
    assert framed.headers["x-content-type-options"] == "nosniff"

    # Not HTML: no inline view; downloads stay sandboxed attachments.
    assert page.get(f"/runs/{run_id}/attempts/1/view/notes.bin").status_code == 404
    download = page.get(f"/runs/{run_id}/attempts/1/outputs/notes.bin")
    assert download.content == NOTES
    assert download.headers["content-disposition"].startswith("attachment;")


def test_another_user_cannot_open_the_frame(
    client: TestClient, failed: dict[str, Any], tokens: dict[str, dict[str, str]]
) -> None:
    olaf = signed_in(TestClient(client.app, follow_redirects=False), "olaf")
    for path in ("view/report/index.html", "outputs/notes.bin"):
        assert olaf.get(f"/runs/{failed['id']}/attempts/1/{path}").status_code == 404
