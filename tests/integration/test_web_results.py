"""Results in the web UI through the in-process app: a CSV output as chart data and a paged table,
JSON pretty-printed, two runs compared, the run page's details fragment, the event stream's time
cap and reconnection, and the form's choice of cache mode. The model is the quickstart's SEIR."""

from __future__ import annotations

import html
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from modelrunner.api.app import create_app
from modelrunner.platform import Platform
from modelrunner.web import run_pages
from tests.conftest import REPO, wait_for_run
from tests.identities import add_user, bearer
from tests.integration.test_web_pages import PASSWORD, browser, csrf_of, signed_in

ACCESS = {"groups": {"modellers": [{"models": ["seir", "noop", "sleeper"], "allow": "run"}]}}
SHORT = {"days": "30"}  # 31 rows: short runs, and still more than one table page below


@pytest.fixture
def workspace(workspace: Path) -> Path:
    """The test workspace with the quickstart's SEIR model, which writes projection.csv and
    summary.json, and a group that may run it."""
    shutil.copytree(REPO / "examples" / "quickstart" / "seir", workspace / "seir")
    config = workspace / "modelrunner.yaml"
    config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "access": ACCESS}))
    return workspace


@pytest.fixture
def modeller(platform: Platform) -> Iterator[TestClient]:
    """A browser signed in as mia, who may run seir, noop and sleeper; her API token is in
    ``API`` headers for the checks that read the API."""
    with TestClient(create_app(platform), follow_redirects=False) as client:
        token = add_user(platform.database, "mia", groups=["modellers"], password=PASSWORD)
        add_user(platform.database, "olaf", password=PASSWORD)
        API.clear()
        API.update(bearer(token))
        yield signed_in(client, "mia")


API: dict[str, str] = {}


def api(client: TestClient, path: str) -> Any:
    return client.get(f"/api/v1{path}", headers=API)


def submit(client: TestClient, model: str, fields: dict[str, str]) -> Any:
    token = csrf_of(client.get(f"/models/{model}").text)
    return client.post(f"/models/{model}/runs", data={"csrf": token, **fields})


def finished_run(client: TestClient, model: str, fields: dict[str, str]) -> int:
    response = submit(client, model, fields)
    assert response.status_code == 303, response.text
    run_id = int(response.headers["location"].rsplit("/", 1)[1])
    wait_for_run(lambda path: client.get(path, headers=API), run_id)
    return run_id


def chart_payload(page: str, key: str) -> dict[str, Any]:
    found = re.search(rf'<script type="application/json" id="chart-data-{key}">(.*?)</script>', page, re.S)
    assert found, f"the page has no chart {key}"
    payload: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return payload


def selected(page: str, select_id: str) -> str:
    block = re.search(rf'<select id="{select_id}"[^>]*>(.*?)</select>', page, re.S)
    assert block, f"no select {select_id}"
    chosen = re.search(r'<option value="([^"]*)" selected>', block.group(1))
    return chosen.group(1) if chosen else ""


def test_a_csv_output_is_charted_and_tabled_and_json_is_pretty(modeller: TestClient) -> None:
    run_id = finished_run(modeller, "seir", {**SHORT, "r0": "3"})
    run_page = modeller.get(f"/runs/{run_id}").text
    assert f'href="/runs/{run_id}/results/projection.csv"' in run_page
    assert f'href="/runs/{run_id}/results/summary.json"' in run_page
    assert f'href="/models/seir/compare?a={run_id}"' in run_page
    # The run page draws the projection at once: day against the five numeric series.
    payload = chart_payload(run_page, "run")
    (source,) = payload["sources"]
    assert source["label"] == f"run {run_id}"
    assert source["columns"]["day"] == [float(d) for d in range(31)]
    assert selected(run_page, "x-run") == "day"
    for series in ("susceptible", "exposed", "infectious", "recovered", "new_infections"):
        assert f'name="series" value="{series}" checked' in run_page

    csv_text = api(modeller, f"/runs/{run_id}/outputs/projection.csv").text
    lines = csv_text.strip().splitlines()
    view = modeller.get(f"/runs/{run_id}/results/projection.csv", params={"x": "susceptible", "series": "recovered"})
    assert view.status_code == 200
    assert selected(view.text, "x-output") == "susceptible"
    assert 'name="series" value="recovered" checked' in view.text
    assert 'name="series" value="exposed" checked' not in view.text
    first_row = lines[1].split(",")
    assert "<td>" + "</td><td>".join(first_row) + "</td>" in view.text
    assert f"{len(lines) - 1} rows" in view.text
    assert "Show more rows" not in view.text  # 31 rows fit one page

    summary = modeller.get(f"/runs/{run_id}/results/summary.json")
    expected = json.dumps(api(modeller, f"/runs/{run_id}/outputs/summary.json").json(), indent=2)
    shown = re.search(r'<pre id="json"[^>]*>(.*?)</pre>', summary.text, re.S)
    assert shown and html.unescape(shown.group(1)) == expected


def test_a_long_table_pages_through_htmx(modeller: TestClient) -> None:
    run_id = finished_run(modeller, "seir", {"days": "250"})
    first = modeller.get(f"/runs/{run_id}/results/projection.csv").text
    assert first.count("<tr><td>") == 100
    assert 'hx-get="/runs/' in first and "rows=100" in first
    more = modeller.get(f"/runs/{run_id}/results/projection.csv?rows=100", headers={"HX-Request": "true"})
    assert more.status_code == 200 and "<html" not in more.text
    assert more.text.count("<tr><td>") == 100
    assert re.search(r"<tr><td>100</td>", more.text)
    assert 'hx-swap-oob="true"' in more.text and "rows=200" in more.text
    last = modeller.get(f"/runs/{run_id}/results/projection.csv?rows=200", headers={"HX-Request": "true"})
    assert last.text.count("<tr><td>") == 51  # days 200..250
    assert "Show more rows" not in last.text


def test_two_runs_compared_side_by_side(modeller: TestClient) -> None:
    low = finished_run(modeller, "seir", {**SHORT, "r0": "1.5"})
    high = finished_run(modeller, "seir", {**SHORT, "r0": "3"})
    picker = modeller.get("/models/seir/compare")
    assert picker.status_code == 200 and f'<option value="{low}"' in picker.text

    page = modeller.get(f"/models/seir/compare?a={low}&b={high}")
    assert page.status_code == 200
    differs = re.findall(r'<tr class="differs"><th scope="row">([^<]+)<', page.text)
    assert [name.strip() for name in differs if not name.startswith(("Output", "Model"))] == ["r0"]
    assert "Output projection.csv" in " ".join(differs)  # other numbers, another sha256
    payload = chart_payload(page.text, "compare-0")
    assert [s["label"] for s in payload["sources"]] == [f"run {low}", f"run {high}"]
    peaks = [max(s["columns"]["infectious"]) for s in payload["sources"]]
    assert peaks[1] > peaks[0]  # the faster epidemic peaks higher
    assert page.text.count('class="document"') == 2  # summary.json of each


def test_compare_refuses_runs_of_another_model_or_out_of_sight(modeller: TestClient, platform: Platform) -> None:
    seir = finished_run(modeller, "seir", SHORT)
    noop = finished_run(modeller, "noop", {})
    mixed = modeller.get(f"/models/seir/compare?a={seir}&b={noop}")
    assert mixed.status_code == 422 and f"run {noop} is a run of 'noop'" in html.unescape(mixed.text)
    olaf = signed_in(browser(modeller), "olaf")  # no grant at all: seir and its runs are unknown to him
    hidden = olaf.get(f"/models/seir/compare?a={seir}&b={seir}")
    assert hidden.status_code == 404 and "unknown model &#39;seir&#39;" in hidden.text
    assert olaf.get(f"/runs/{seir}/results/projection.csv").status_code == 404
    # A file that is neither CSV nor JSON has no view: its link is the download.
    sleeper = finished_run(modeller, "sleeper", {"seconds": "0.1"})
    assert "View done.txt" not in modeller.get(f"/runs/{sleeper}").text
    download = modeller.get(f"/runs/{sleeper}/results/done.txt")
    assert download.status_code == 303 and download.headers["location"] == f"/runs/{sleeper}/outputs/done.txt"
    missing = modeller.get(f"/runs/{seir}/results/nothing.csv")
    assert missing.status_code == 404 and "has no output 'nothing.csv'" in html.unescape(missing.text)


def test_the_details_fragment_follows_the_run_until_it_ends(modeller: TestClient) -> None:
    response = submit(modeller, "sleeper", {"seconds": "1.5"})
    run_id = int(response.headers["location"].rsplit("/", 1)[1])
    live = modeller.get(f"/runs/{run_id}/details")
    assert live.status_code == 200 and "<html" not in live.text
    assert 'hx-trigger="run-changed from:body"' in live.text and 'id="cancel"' in live.text
    wait_for_run(lambda path: modeller.get(path, headers=API), run_id)
    done = modeller.get(f"/runs/{run_id}/details").text
    assert "hx-trigger" not in done and 'id="cancel"' not in done
    assert "done.txt" in done and re.search(r'<td class="status status-succeeded">succeeded</td>', done)


def test_the_stream_ends_after_its_time_cap_and_resumes_from_last_event_id(
    modeller: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_pages, "STREAM_SECONDS", 0.0)
    response = submit(modeller, "sleeper", {"seconds": "3"})
    stream_url = response.headers["location"] + "/stream"

    def read(headers: dict[str, str]) -> list[tuple[str, str, dict[str, Any]]]:
        events, kind, event_id = [], "", ""
        with modeller.stream("GET", stream_url, headers=headers) as stream:
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("id: "):
                    event_id = line.removeprefix("id: ")
                elif line.startswith("data: "):
                    events.append((kind, event_id, json.loads(line.removeprefix("data: "))))
        return events

    first = read({})
    assert [kind for kind, _, _ in first] == ["progress"]  # cut off after one look, not ended
    while not first[0][2]["log"]:  # until the model has written something
        first = read({})
    offset = first[0][1]
    assert int(offset) == len(first[0][2]["log"].encode())
    later = read({"Last-Event-ID": offset})  # what the browser sends when it connects again
    wait_for_run(lambda path: modeller.get(path, headers=API), int(stream_url.split("/")[2]))
    whole = read({"Last-Event-ID": "0"})
    assert [kind for kind, _, _ in whole] == ["progress", "end"]
    # The second connection went on where the first stopped: no line twice, none missed.
    assert whole[0][2]["log"].startswith(first[0][2]["log"] + later[0][2]["log"])


def test_the_form_chooses_how_the_cache_is_used(modeller: TestClient, platform: Platform) -> None:
    only = submit(modeller, "seir", {**SHORT, "r0": "2.2", "run.cache": "only"})
    assert only.status_code == 409 and 'id="message"' in only.text
    first = finished_run(modeller, "seir", {**SHORT, "r0": "2.2"})
    hit = submit(modeller, "seir", {**SHORT, "r0": "2.2", "run.cache": "only"})
    hit_id = int(hit.headers["location"].rsplit("/", 1)[1])
    assert f'href="/runs/{first}"' in modeller.get(f"/runs/{hit_id}").text  # answered by the first run
    again = finished_run(modeller, "seir", {**SHORT, "r0": "2.2", "run.cache": "refresh"})
    assert again not in (first, hit_id)
    assert api(modeller, f"/runs/{again}").json()["cache_hit"] is False
    bad = submit(modeller, "seir", {**SHORT, "run.cache": "sometimes"})
    assert bad.status_code == 422 and "unknown cache choice 'sometimes'" in html.unescape(bad.text)
    assert 'id="cache-use" value="use" checked' in modeller.get("/models/seir").text  # the default
    # A page sent back for a bad value keeps the choice made.
    kept = submit(modeller, "seir", {"days": "-3", "run.cache": "refresh"})
    assert kept.status_code == 422 and 'id="cache-refresh" value="refresh" checked' in kept.text


def test_a_part_of_a_page_fetched_after_signing_out_sends_the_page_to_sign_in(modeller: TestClient) -> None:
    run_id = finished_run(modeller, "noop", {})
    home = modeller.get("/")
    modeller.post("/signout", data={"csrf": csrf_of(home.text)})
    page = f"http://testserver/runs/{run_id}?x=1"
    part = modeller.get(f"/runs/{run_id}/details", headers={"HX-Request": "true", "HX-Current-URL": page})
    assert part.status_code == 401 and part.text == ""
    assert part.headers["HX-Redirect"] == f"/signin?next=%2Fruns%2F{run_id}%3Fx%3D1"
