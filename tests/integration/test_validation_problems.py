"""Every problem with a run's parameters is reported at once: in one 422 of the API (single and
batch submits, result look-ups) and next to each field of the web form, with nothing submitted.
And the pages show durations and sizes as people write them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from modelrunner.api.app import create_app
from modelrunner.platform import Platform
from tests.conftest import wait_for_run
from tests.identities import add_user, bearer, token_for
from tests.integration.runs_api import stored_counts
from tests.integration.test_web_pages import PASSWORD, SHAPES, csrf_of, signed_in

# noop declares n (integer) and label (string).
BAD_NOOP = {"n": "three", "label": 5, "colour": "red", "size": 2}
NOOP_ERRORS = [
    {"field": "params.colour", "message": "is not a parameter of this model (its parameters: n, label)"},
    {"field": "params.label", "message": "5 is not of type 'string'"},
    {"field": "params.n", "message": "'three' is not of type 'integer'"},
    {"field": "params.size", "message": "is not a parameter of this model (its parameters: n, label)"},
]


def test_a_submit_lists_every_problem_in_one_422_and_writes_nothing(client: TestClient, platform: Platform) -> None:
    response = client.post("/api/v1/models/noop/runs", json={"params": BAD_NOOP})

    assert response.status_code == 422, response.text
    body = response.json()
    assert body["errors"] == NOOP_ERRORS
    # The same problems in FastAPI's located form, which clients of earlier releases read.
    assert [item["loc"] for item in body["detail"]] == [
        ["body", "params", "colour"],
        ["body", "params", "label"],
        ["body", "params", "n"],
        ["body", "params", "size"],
    ]
    assert [item["msg"] for item in body["detail"]] == [f"{e['field']}: {e['message']}" for e in NOOP_ERRORS]
    assert {item["type"] for item in body["detail"]} == {"invalid_params"}
    assert stored_counts(platform) == (0, 0)


def test_fastapis_own_422_carries_the_same_errors_list(client: TestClient) -> None:
    response = client.post("/api/v1/models/noop/runs", json={"params": [], "cache": "sometimes"})

    assert response.status_code == 422, response.text
    fields = [error["field"] for error in response.json()["errors"]]
    assert fields == ["params", "cache"]


def test_a_batch_names_each_refused_item_with_all_its_problems(client: TestClient, platform: Platform) -> None:
    runs = [{"params": {"n": 1}}, {"params": {"n": -0.5, "nn": 2}}, {"params": {}}, {"params": {"label": []}}]

    response = client.post("/api/v1/models/noop/runs/batch", json={"runs": runs})

    assert response.status_code == 422, response.text
    body = response.json()
    assert [item["loc"] for item in body["detail"]] == [
        ["body", "runs", 1, "params", "n"],
        ["body", "runs", 1, "params", "nn"],
        ["body", "runs", 3, "params", "label"],
    ]
    assert [e["field"] for e in body["errors"]] == ["runs.1.params.n", "runs.1.params.nn", "runs.3.params.label"]
    assert body["errors"][1]["message"].startswith("is not a parameter of this model")
    assert {item["status"] for item in body["detail"]} == {422}
    assert stored_counts(platform) == (0, 0)


def test_a_result_look_up_lists_every_bad_query_parameter(client: TestClient) -> None:
    response = client.get("/api/v1/models/noop/results", params={"n": "x", "labels": "a"})

    assert response.status_code == 422, response.text
    assert [item["loc"] for item in response.json()["detail"]] == [
        ["query", "params", "labels"],
        ["query", "params", "n"],
    ]


def test_the_openapi_document_describes_the_422_body(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    submit = document["paths"]["/api/v1/models/{name}/runs"]["post"]["responses"]["422"]

    assert submit["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/InvalidRequestBody"}
    body = document["components"]["schemas"]["InvalidRequestBody"]
    assert set(body["properties"]) == {"detail", "errors"}
    assert set(document["components"]["schemas"]["FieldError"]["properties"]) == {"field", "message"}


# --- the web form -------------------------------------------------------------------------------------


@pytest.fixture
def workspace(workspace: Path) -> Path:
    """The test workspace with a model whose schema has a field of every kind, runnable by group
    runners, and a dataset."""
    config = workspace / "modelrunner.yaml"
    spec = yaml.safe_load(config.read_text())
    access = {"groups": {"runners": [{"models": ["shapes"], "allow": "run"}]}}
    # A dataset polled daily (86,400 seconds), for the pages that show its interval.
    (workspace / "feed").mkdir()
    datasets = {"feed": {"source": "files", "url": "feed", "poll": "1d"}}
    config.write_text(yaml.safe_dump({**spec, "access": access, "datasets": datasets}))
    (workspace / "shapes").mkdir()
    (workspace / "shapes" / "model.yaml").write_text(yaml.safe_dump(SHAPES))
    (workspace / "shapes" / "noop.py").write_text((workspace / "noop" / "noop.py").read_text())
    return workspace


@pytest.fixture
def runner(platform: Platform) -> Iterator[TestClient]:
    """A browser signed in as a user who may run ``shapes``."""
    with TestClient(create_app(platform), follow_redirects=False) as client:
        add_user(platform.database, "rune", groups=["runners"], password=PASSWORD)
        add_user(platform.database, "ada", admin=True, password=PASSWORD)
        yield signed_in(client, "rune")


def field_error(html: str, name: str) -> str:
    found = re.search(rf'id="error-{name}"[^>]*>([^<]*)<', html)
    assert found, f"no error element for {name}"
    return found.group(1)


def test_the_form_shows_every_schema_problem_next_to_its_field(runner: TestClient, platform: Platform) -> None:
    token = csrf_of(runner.get("/models/shapes").text)

    page = runner.post("/models/shapes/runs", data={"csrf": token, "r0": "20", "days": "0", "label": "kept"})

    assert page.status_code == 422
    assert field_error(page.text, "r0") == "20 is greater than the maximum of 10"
    assert field_error(page.text, "days") == "0 is less than the minimum of 1"
    assert field_error(page.text, "label") == ""
    assert 'value="20"' in page.text and 'value="0"' in page.text and 'value="kept"' in page.text
    assert stored_counts(platform) == (0, 0)


def test_a_field_that_is_not_of_its_type_does_not_hide_the_others(runner: TestClient, platform: Platform) -> None:
    token = csrf_of(runner.get("/models/shapes").text)

    page = runner.post("/models/shapes/runs", data={"csrf": token, "r0": "abc", "days": "0", "ages": "1, x"})

    assert page.status_code == 422
    assert field_error(page.text, "r0") == "&#39;abc&#39; is not a number"
    assert field_error(page.text, "ages") == "&#39;x&#39; is not a whole number"
    assert field_error(page.text, "days") == "0 is less than the minimum of 1"  # found by the schema
    assert 'value="abc"' in page.text and 'value="1, x"' in page.text
    assert stored_counts(platform) == (0, 0)


def test_pages_show_durations_and_sizes_as_people_write_them(runner: TestClient, platform: Platform) -> None:
    token = csrf_of(runner.get("/models/shapes").text)
    run_page = runner.post("/models/shapes/runs", data={"csrf": token, "r0": "3"}).headers["location"]
    api = bearer(token_for(platform.database, "rune"))
    wait_for_run(lambda path: runner.get(path, headers=api), int(run_page.rsplit("/", 1)[1]))

    details = runner.get(f"{run_page}/details").text

    assert re.search(r"<td>\d\d:\d\d:\d\d \(\d+(\.\d)?s\)</td>", details), details  # the attempt's duration
    assert re.search(r"params\.json</a></td><td>\d+ B</td>", details), details
    admin = signed_in(TestClient(runner.app, follow_redirects=False), "ada")
    assert "<dd>every 1d, and on request</dd>" in admin.get("/datasets/feed").text
