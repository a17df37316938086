"""Lists of runs on the pages, in process: each run with the parameters that tell it apart, the
runs page's filters (a GET form: a filtered list has an address), and pages of what a caller may
not view answered exactly as pages of what does not exist."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from modelrunner.platform import Platform
from tests.conftest import wait_for_run
from tests.identities import add_user, bearer

PASSWORD = "correct horse battery staple"
ACCESS = {
    "anonymous": [{"models": "noop", "allow": "view"}],
    "groups": {
        "viewers": [{"models": "noop", "allow": "view"}],
        "runners": [{"models": ["noop", "sleeper"], "allow": "run"}],
    },
}


@pytest.fixture
def workspace(workspace: Path) -> Path:
    """Viewers see noop only; runners run noop and sleeper; anonymous callers may view noop."""
    config = workspace / "modelrunner.yaml"
    config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "access": ACCESS}))
    return workspace


@pytest.fixture
def tokens(client: TestClient, platform: Platform) -> dict[str, str]:
    """vera (viewers) and rune (runners), who sign in with PASSWORD; their API tokens."""
    return {
        "vera": add_user(platform.database, "vera", groups=["viewers"], password=PASSWORD),
        "rune": add_user(platform.database, "rune", groups=["runners"], password=PASSWORD),
    }


@pytest.fixture
def pages(client: TestClient) -> Iterator[TestClient]:
    """A browser without cookies on the app that ``client`` started."""
    yield TestClient(client.app, follow_redirects=False)


@pytest.fixture
def ada(client: TestClient, platform: Platform) -> TestClient:
    """A site admin's browser, signed in."""
    add_user(platform.database, "ada", admin=True, password=PASSWORD)
    return signed_in(TestClient(client.app, follow_redirects=False), "ada")


def signed_in(pages: TestClient, name: str) -> TestClient:
    form = pages.get("/signin").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf
    response = pages.post("/signin", data={"username": name, "password": PASSWORD, "csrf": csrf.group(1)})
    assert response.status_code == 303, response.text
    return pages


def finished(client: TestClient, model: str, params: dict[str, Any], token: str | None = None) -> int:
    headers = bearer(token) if token else {}
    response = client.post(f"/api/v1/models/{model}/runs", json={"params": params}, headers=headers)
    assert response.status_code in (200, 201), response.text
    return int(wait_for_run(client.get, response.json()["id"])["id"])


def listed(page: str) -> dict[int, str]:
    """Run id -> the text of its Parameters cell, in the order of the page's runs table."""
    table = page[page.index('id="runs"') :]
    rows = re.findall(r'<a href="/runs/(\d+)">#\d+</a>.*?<td class="params">(.*?)</td>', table, re.S)
    return {int(run_id): " ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split()) for run_id, cell in rows}


def test_lists_and_pickers_show_the_parameters_that_differ(client: TestClient, tokens: dict[str, str]) -> None:
    same_label = [finished(client, "noop", {"n": n, "label": "north"}) for n in (1, 2)]
    page = signed_in(TestClient(client.app, follow_redirects=False), "rune").get("/models/noop").text
    # Only n differs; label is the same in both runs.
    assert listed(page) == {same_label[1]: "n 2", same_label[0]: "n 1"}
    assert 'href="/runs?model=noop"' in page

    other = finished(client, "noop", {"n": 2, "label": "a long label that goes on and on and on, past any cell"})
    page = signed_in(TestClient(client.app, follow_redirects=False), "rune").get("/models/noop").text
    assert listed(page)[other] == "n 2 label a long label that goes on and o…"
    assert listed(page)[same_label[0]] == "n 1 label north"

    compare = client.get("/models/noop/compare")
    options = re.findall(r'<option value="(\d+)">([^<]+)</option>', compare.text)
    text = {int(run_id): html.unescape(label) for run_id, label in options}
    assert text[same_label[0]].startswith(f"#{same_label[0]} · n=1, label=north · ")


def test_a_run_alone_shows_its_first_parameters(client: TestClient, tokens: dict[str, str]) -> None:
    run_id = finished(client, "sleeper", {"seconds": 0, "tag": "only"})
    page = signed_in(TestClient(client.app, follow_redirects=False), "rune").get("/models/sleeper").text
    assert listed(page) == {run_id: "seconds 0 tag only counter"}  # no other run: the first three


def test_the_runs_page_filters_by_status_submitter_backend_and_parameter(
    client: TestClient, tokens: dict[str, str], pages: TestClient, ada: TestClient
) -> None:
    mine = finished(client, "noop", {"n": 1, "label": "north"})
    runes = finished(client, "noop", {"n": 2, "label": "south"}, tokens["rune"])
    slept = finished(client, "sleeper", {"seconds": 0.2}, tokens["rune"])
    failed = finished(client, "no_output", {})
    rune = signed_in(pages, "rune")

    everything = ada.get("/runs")
    assert list(listed(everything.text)) == [failed, slept, runes, mine]
    assert 'id="filter-model"' in everything.text and 'id="clear-filters"' not in everything.text
    # rune sees the models he may view, and lists only their runs.
    assert list(listed(rune.get("/runs").text)) == [slept, runes, mine]
    for query, expected in [
        ("model=noop", [runes, mine]),
        ("status=failed", [failed]),
        ("status=succeeded&model=sleeper", [slept]),
        ("submitter=rune", [slept, runes]),
        ("submitter=nobody", []),
        ("backend=local", [failed, slept, runes, mine]),
        ("param=label%3Dsouth", [runes]),
        ("param=n%3D1", [mine]),
        ("param=n%3D1&param=label%3Dsouth", []),
        ("model=&status=&submitter=&backend=&param=", [failed, slept, runes, mine]),  # the form's "any"
    ]:
        page = ada.get(f"/runs?{query}")
        assert page.status_code == 200, (query, page.text)
        assert list(listed(page.text)) == expected, query
    filtered = ada.get("/runs?status=succeeded&param=label%3Dsouth").text
    assert '<option value="succeeded" selected>' in filtered and 'value="label=south"' in filtered
    assert 'id="clear-filters"' in filtered
    assert "No run matches these filters." in ada.get("/runs?submitter=nobody").text


def test_the_runs_page_goes_back_a_page_at_a_time(
    client: TestClient, ada: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("modelrunner.web.run_lists.RUNS_PER_PAGE", 2)
    runs = [finished(client, "noop", {"n": n}) for n in range(3)]
    first = ada.get("/runs?model=noop").text
    assert list(listed(first)) == [runs[2], runs[1]]
    older = re.search(r'id="older-runs" href="([^"]+)"', first)
    assert older
    second = ada.get(html.unescape(older.group(1))).text
    assert list(listed(second)) == [runs[0]] and 'id="older-runs"' not in second
    assert 'id="newest-runs" href="/runs?model=noop"' in second


def test_bad_filters_are_named(ada: TestClient) -> None:
    for query, named in [
        ("status=sleeping", "unknown status &#39;sleeping&#39;"),
        ("param=north", "param: &#39;north&#39; is not name=value"),
        ("before=0", "before: &#39;0&#39; is no run id"),
        ("before=x", "before: &#39;x&#39; is no run id"),
    ]:
        page = ada.get(f"/runs?{query}")
        assert page.status_code == 422, query
        assert page.headers["content-type"].startswith("text/html")
        assert named in page.text, query


def _same_page(first: str, second: str, first_name: str, second_name: str) -> None:
    """The two pages are one page but for the name each one's address asked for."""
    assert first.replace(first_name, "NAME") == second.replace(second_name, "NAME")


def test_what_one_may_not_view_is_answered_as_what_does_not_exist(
    client: TestClient, tokens: dict[str, str], pages: TestClient
) -> None:
    hidden = finished(client, "sleeper", {"seconds": 0})  # vera may not view sleeper
    unknown = hidden + 1000
    vera = signed_in(pages, "vera")
    for hidden_path, unknown_path, names in [
        ("/models/sleeper", "/models/nothing", ("sleeper", "nothing")),
        ("/models/sleeper/compare", "/models/nothing/compare", ("sleeper", "nothing")),
        ("/runs?model=sleeper", "/runs?model=nothing", ("sleeper", "nothing")),
        (f"/runs/{hidden}", f"/runs/{unknown}", (f"run {hidden}", f"run {unknown}")),
        (f"/runs/{hidden}/details", f"/runs/{unknown}/details", (f"run {hidden}", f"run {unknown}")),
        (f"/runs/{hidden}/outputs/done.txt", f"/runs/{unknown}/outputs/done.txt", (f"run {hidden}", f"run {unknown}")),
        (f"/runs/{hidden}/results/done.txt", f"/runs/{unknown}/results/done.txt", (f"run {hidden}", f"run {unknown}")),
        (f"/models/noop/compare?a={hidden}&b={hidden}", f"/models/noop/compare?a={unknown}&b={unknown}", ("", "")),
    ]:
        seen, missing = vera.get(hidden_path), vera.get(unknown_path)
        assert seen.status_code == missing.status_code == 404, hidden_path
        if "sleeper" not in hidden_path:
            assert "sleeper" not in seen.text, hidden_path
        if names[0]:
            _same_page(seen.text, missing.text, *names)
    # A viewer of noop who may not run it is still told why (403): noop is hers to see.
    csrf = re.search(r'name="csrf" value="([^"]+)"', vera.get("/models/noop").text)
    assert csrf
    refused = vera.post("/models/noop/runs", data={"csrf": csrf.group(1)})
    assert refused.status_code == 403 and "needs &#39;run&#39;" in refused.text
    concealed = vera.post("/models/sleeper/runs", data={"csrf": csrf.group(1)})
    assert concealed.status_code == 404 and "unknown model &#39;sleeper&#39;" in concealed.text
    # Anonymous callers are asked to sign in, for a hidden run and an unknown one alike.
    anonymous = TestClient(client.app, follow_redirects=False)
    for path in (f"/runs/{hidden}", f"/runs/{unknown}", "/models/sleeper", "/models/nothing"):
        response = anonymous.get(path)
        assert response.status_code == 303 and response.headers["location"].startswith("/signin?next="), path
    # The API answers a hidden run as an unknown one too: walking run ids names no hidden model.
    api = client.get(f"/api/v1/runs/{hidden}", headers=bearer(tokens["vera"]))
    assert api.status_code == 404 and "sleeper" not in api.text
