"""A pipeline's step graph on the web pages, through the in-process app: each step with its state,
arrows for its needs and links to its runs; the fragment that refreshes itself while the pipeline
runs and stops once it is final; the same view permission as the run page; the bare structure on
the model page."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from modelrunner.platform import Platform
from modelrunner.spec.model_spec import ModelSpec
from modelrunner.web.pipeline_graph import BOX_HEIGHT, BOX_WIDTH, GAP_Y, structure_of
from tests.conftest import TESTS, wait_for_run
from tests.identities import add_user
from tests.integration.runs_api import get_run, submit, wait_until

PASSWORD = "correct horse battery staple"
ACCESS = {
    "groups": {
        "viewers": [{"models": ["regional", "noop"], "allow": "view"}],
        "outsiders": [{"models": "noop", "allow": "view"}],
    },
}
REGIONS = ["north", "south", "east", "west", "central"]


@pytest.fixture
def workspace(workspace: Path) -> Path:
    """The test workspace with the test pipeline (a fan-out of five, a fan-in, a publish step) as
    ``regional``; viewers may view it, outsiders only ``noop``."""
    shutil.copytree(TESTS / "pipeline_model", workspace / "regional")
    config = workspace / "modelrunner.yaml"
    config.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "access": ACCESS}))
    return workspace


@pytest.fixture
def pages(client: TestClient, platform: Platform) -> Iterator[TestClient]:
    """Another browser on the running app (its own cookies, no bearer token), not signed in yet."""
    add_user(platform.database, "vera", groups=["viewers"], password=PASSWORD)
    add_user(platform.database, "olga", groups=["outsiders"], password=PASSWORD)
    yield TestClient(client.app, follow_redirects=False)


def signed_in(pages: TestClient, name: str) -> TestClient:
    """Pages read the session cookie only (a bearer token does not sign a page in)."""
    form = pages.get("/signin").text
    token = re.search(r'name="csrf" value="([^"]+)"', form)
    assert token is not None
    response = pages.post("/signin", data={"username": name, "password": PASSWORD, "csrf": token.group(1)})
    assert response.status_code == 303, response.text
    return pages


# --- reading the graph back out of the HTML -----------------------------------------------------


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    parent: Element | None
    children: list[Element] = field(default_factory=list)
    text: str = ""

    def all(self, tag: str, cls: str | None = None) -> list[Element]:
        found = []
        for child in self.children:
            if child.tag == tag and (cls is None or cls in child.attrs.get("class", "").split()):
                found.append(child)
            found.extend(child.all(tag, cls))
        return found

    def text_content(self) -> str:
        return self.text + "".join(child.text_content() for child in self.children)

    def ancestor(self, tag: str) -> Element | None:
        node = self.parent
        while node is not None and node.tag != tag:
            node = node.parent
        return node


class _Tree(HTMLParser):
    VOID = frozenset({"meta", "link", "input", "br", "img", "hr"})

    def __init__(self) -> None:
        super().__init__()
        self.root = Element("root", {}, None)
        self.at = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs}, self.at)
        self.at.children.append(element)
        if tag not in self.VOID:
            self.at = element

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.at.children.append(Element(tag, {k: v or "" for k, v in attrs}, self.at))

    def handle_endtag(self, tag: str) -> None:
        node: Element | None = self.at
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.at = node.parent

    def handle_data(self, data: str) -> None:
        self.at.children.append(Element("#text", {}, self.at, text=data))


@dataclass(frozen=True)
class Box:
    state: str | None  # the state its class colours it by
    texts: list[str]  # name, state, detail as written in the box
    href: str | None
    x: float
    y: float


@dataclass(frozen=True)
class Graph:
    section: Element
    boxes: dict[str, Box]
    arrows: set[tuple[str, str]]
    entries: dict[str, str]  # step -> its entry in the list, as text
    entry_links: dict[str, list[tuple[str, str]]]  # step -> (text, href) of each link of its entry

    @property
    def refreshes(self) -> bool:
        return "hx-trigger" in self.section.attrs


def graph_in(html: str) -> Graph:
    parser = _Tree()
    parser.feed(html)
    sections = [s for s in parser.root.all("section") if s.attrs.get("id") == "pipeline-graph"]
    assert len(sections) == 1, "no step graph (or more than one) in the page"
    section = sections[0]
    boxes = {}
    for step in section.all("g", "pg-step"):
        classes = step.attrs["class"].split()
        state = next(c.removeprefix("pg-") for c in classes if c != "pg-step")
        link = step.ancestor("a")
        x, y = re.fullmatch(r"translate\((\S+) (\S+)\)", step.attrs["transform"]).groups()  # type: ignore[union-attr]
        texts = [t.text_content().strip() for t in step.all("text")]
        boxes[step.attrs["data-step"]] = Box(
            None if state == "structure" else state, texts, link.attrs["href"] if link else None, float(x), float(y)
        )
    arrows = {(a.attrs["data-need"], a.attrs["data-step"]) for a in section.all("path", "pg-arrow")}
    entries, entry_links = {}, {}
    for entry in section.all("li", "pg-entry"):
        name = entry.attrs["data-step"]
        entries[name] = " ".join(entry.text_content().split())
        entry_links[name] = [(a.text_content().strip(), a.attrs["href"]) for a in entry.all("a")]
    return Graph(section, boxes, arrows, entries, entry_links)


def children_by_step(client: TestClient, pipeline_id: int) -> dict[tuple[str, str | None], dict[str, object]]:
    items = client.get("/api/v1/runs", params={"parent": pipeline_id, "limit": 500}).json()["items"]
    return {(r["step"], r["item_key"]): r for r in items}


# --- a finished pipeline ------------------------------------------------------------------------


def test_a_finished_pipeline_shows_every_step_with_its_final_state(client: TestClient, pages: TestClient) -> None:
    run = wait_for_run(client.get, submit(client, "regional", {"fail_region": "south"})["id"])
    assert run["status"] == "failed"
    runs = children_by_step(client, run["id"])
    vera = signed_in(pages, "vera")

    page = vera.get(f"/runs/{run['id']}")

    assert page.status_code == 200
    graph = graph_in(page.text)
    assert not graph.refreshes  # final: nothing more to ask
    assert list(graph.boxes) == ["estimate", "check", "summarise", "publish"]  # steps after their needs
    assert {name: box.state for name, box in graph.boxes.items()} == {
        "estimate": "failed",
        "check": "succeeded",
        "summarise": "blocked",
        "publish": "blocked",
    }
    # The state is written in each box, not only coloured; a fan-out counts its items.
    assert graph.boxes["estimate"].texts == ["estimate", "failed", "5/5 items done, 1 failed"]
    assert graph.boxes["check"].texts[:2] == ["check", "succeeded"]
    assert graph.boxes["summarise"].texts[:2] == ["summarise", "blocked"]
    assert graph.arrows == {("estimate", "summarise"), ("summarise", "publish"), ("check", "publish")}
    # A box links to its step's run; a fan-out's box to its failed item; a blocked step has no run.
    assert graph.boxes["check"].href == f"/runs/{runs[('check', None)]['id']}"
    assert graph.boxes["estimate"].href == f"/runs/{runs[('estimate', 'south')]['id']}"
    assert graph.boxes["summarise"].href is None and graph.boxes["publish"].href is None
    # Layers: what needs nothing on top, every arrow pointing down, each layer in written order.
    boxes = graph.boxes
    assert boxes["estimate"].y == boxes["check"].y < boxes["summarise"].y < boxes["publish"].y
    assert boxes["estimate"].x + BOX_WIDTH <= boxes["check"].x

    # The same as text: state, items, needs, the error, and a link to each item's run.
    assert graph.entries["estimate"].startswith("estimate: failed, 5/5 items done, 1 failed; needs no other step")
    assert "(item south: the model ended with exit status 1)" in graph.entries["estimate"]
    assert graph.entries["publish"] == (
        "publish: blocked; needs summarise, check (it needs 'summarise', which did not succeed)"
    )
    items = dict(graph.entry_links["estimate"][1:])
    assert items == {region: f"/runs/{runs[('estimate', region)]['id']}" for region in REGIONS}
    assert graph.entry_links["check"] == [("check", f"/runs/{runs[('check', None)]['id']}")]
    assert graph.entry_links["summarise"] == []
    # Every link leads to a page the viewer may open.
    for _, href in [link for links in graph.entry_links.values() for link in links]:
        step_page = vera.get(href)
        assert step_page.status_code == 200, href
        assert f'<a id="pipeline-run" href="/runs/{run["id"]}">' in step_page.text  # and back

    fragment = vera.get(f"/runs/{run['id']}/graph")
    assert fragment.status_code == 200
    assert fragment.text.lstrip().startswith("<section") and "<html" not in fragment.text
    assert fragment.headers["content-security-policy"].startswith("default-src 'self'")
    again = graph_in(fragment.text)
    assert again.boxes == graph.boxes and not again.refreshes


def test_a_pipeline_without_a_failure_links_a_fan_out_to_its_first_item(client: TestClient, pages: TestClient) -> None:
    regions = ["b", "a", *(f"r{n}" for n in range(25))]
    run = wait_for_run(client.get, submit(client, "regional", {"regions": regions})["id"], timeout=60)
    assert run["status"] == "succeeded", run["error"]
    runs = children_by_step(client, run["id"])

    graph = graph_in(signed_in(pages, "vera").get(f"/runs/{run['id']}").text)

    assert {box.state for box in graph.boxes.values()} == {"succeeded"}
    assert graph.boxes["estimate"].texts == ["estimate", "succeeded", "27/27 items done"]
    # The list links the first 25 items and counts the others.
    assert [key for key, _ in graph.entry_links["estimate"][1:]] == regions[:25]
    assert graph.entries["estimate"].endswith("and 2 more")
    assert graph.boxes["estimate"].href == f"/runs/{min(runs[('estimate', k)]['id'] for k in 'ab')}"  # type: ignore[type-var]
    assert graph.boxes["publish"].href == f"/runs/{runs[('publish', None)]['id']}"

    # The same pipeline again is answered from the cache: it shows the steps that computed it.
    again = submit(client, "regional", {"regions": regions})
    assert again["submission"] == "cache_hit"
    cached = graph_in(pages.get(f"/runs/{again['id']}").text)
    assert cached.boxes == graph.boxes and not cached.refreshes


# --- a running pipeline -------------------------------------------------------------------------


def test_a_running_pipeline_refreshes_its_graph_until_it_ends(client: TestClient, pages: TestClient) -> None:
    pipeline_id = submit(client, "regional", {"sleep": 30})["id"]
    vera = signed_in(pages, "vera")
    url = f"/runs/{pipeline_id}/graph"

    def running() -> Graph | None:
        graph = graph_in(vera.get(url).text)
        return graph if graph.boxes["estimate"].state == "running" else None

    graph = wait_until(running, 20, "the fan-out to run")
    assert graph.refreshes
    attrs = graph.section.attrs
    assert attrs["hx-trigger"] == "every 2s" and attrs["hx-swap"] == "outerHTML"
    assert attrs["hx-get"].startswith(f"{url}?seen=")
    assert graph.boxes["summarise"].state == "waiting" and graph.boxes["publish"].state == "waiting"
    assert graph.boxes["estimate"].texts[2] == "0/5 items done"
    # The page carries the same live fragment.
    assert graph_in(vera.get(f"/runs/{pipeline_id}").text).refreshes

    # Asked with the version it shows, while nothing changed: 204, the page keeps its graph.
    def unchanged() -> bool:
        seen = graph_in(vera.get(url).text).section.attrs["hx-get"]
        return vera.get(seen).status_code == 204

    wait_until(unchanged, 20, "a poll that finds nothing new")

    assert client.post(f"/api/v1/runs/{pipeline_id}/cancel").status_code == 200
    assert wait_for_run(client.get, pipeline_id)["status"] == "cancelled"
    final = vera.get(url)
    assert final.status_code == 200
    ended = graph_in(final.text)
    assert not ended.refreshes and "hx-get" not in ended.section.attrs
    assert ended.boxes["estimate"].state == "failed"  # its items were cancelled
    assert get_run(client, pipeline_id)["steps"][0]["status"] == "failed"  # as the API says


# --- who may see it -----------------------------------------------------------------------------


def test_the_graph_needs_view_access_to_the_pipeline(client: TestClient, pages: TestClient, platform: Platform) -> None:
    pipeline_id = wait_for_run(client.get, submit(client, "regional", {"regions": ["x"]})["id"])["id"]

    olga = signed_in(pages, "olga")  # may view noop only: the pipeline run is unknown to her
    refused = olga.get(f"/runs/{pipeline_id}/graph")
    assert refused.status_code == 404
    assert f"unknown run {pipeline_id}" in refused.text and "regional" not in refused.text
    assert "pg-step" not in refused.text
    assert olga.get(f"/runs/{pipeline_id}").status_code == 404
    anonymous = TestClient(client.app, follow_redirects=False)
    assert anonymous.get(f"/runs/{pipeline_id}/graph").status_code == 303  # to sign in
    assert olga.get("/runs/999999/graph").status_code == 404

    # A run that is no pipeline has no graph.
    noop = wait_for_run(client.get, submit(client, "noop", {})["id"])
    assert olga.get(f"/runs/{noop['id']}/graph").status_code == 404
    page = olga.get(f"/runs/{noop['id']}")
    assert page.status_code == 200 and 'id="pipeline-graph"' not in page.text


# --- a pipeline model's structure ---------------------------------------------------------------


def test_the_model_page_shows_the_steps_without_states(pages: TestClient) -> None:
    vera = signed_in(pages, "vera")

    graph = graph_in(vera.get("/models/regional").text)

    assert list(graph.boxes) == ["estimate", "check", "summarise", "publish"]
    assert all(box.state is None and box.href is None for box in graph.boxes.values())
    assert graph.boxes["estimate"].texts == ["estimate", "for each params.regions"]
    assert graph.boxes["publish"].texts == ["publish", "runs once, publishes"]
    assert graph.arrows == {("estimate", "summarise"), ("summarise", "publish"), ("check", "publish")}
    assert graph.entries["summarise"] == "summarise, runs once; needs estimate"
    assert not graph.refreshes
    assert 'id="pipeline-graph"' not in vera.get("/models/noop").text


def test_layers_follow_the_longest_path_and_keep_the_written_order() -> None:
    spec = ModelSpec.model_validate(
        {
            "name": "diamond",
            "steps": {
                "fetch": {"command": ["true"]},
                "right": {"command": ["true"], "needs": ["fetch"]},
                "left": {"command": ["true"], "needs": ["fetch"]},
                "join": {"command": ["true"], "needs": ["left", "right"]},
                "report": {"command": ["true"], "needs": ["fetch", "join"]},
                "alone": {"command": ["true"]},
            },
        }
    )
    graph = structure_of(spec)
    assert graph is not None
    boxes = {box.name: box for box in graph.boxes}
    layer = {name: (box.y - boxes["fetch"].y) // (BOX_HEIGHT + GAP_Y) for name, box in boxes.items()}
    assert layer == {"fetch": 0, "alone": 0, "right": 1, "left": 1, "join": 2, "report": 3}
    assert boxes["fetch"].x < boxes["alone"].x and boxes["right"].x < boxes["left"].x  # as written
    for a in boxes.values():  # no two boxes overlap, and all lie inside the drawing
        assert a.x >= 0 and a.x + BOX_WIDTH <= graph.width and a.y + BOX_HEIGHT <= graph.height
        for b in boxes.values():
            if a is not b and a.y == b.y:
                assert a.x + BOX_WIDTH <= b.x or b.x + BOX_WIDTH <= a.x
    # An arrow that skips a layer passes it beside its boxes, never through one.
    for arrow in graph.arrows:
        for x, y in re.findall(r"L([\d.]+),([\d.]+)", arrow.path):
            for box in boxes.values():
                assert not (box.x <= float(x) <= box.x + BOX_WIDTH and box.y < float(y) <= box.y + BOX_HEIGHT), arrow
    report = next(arrow for arrow in graph.arrows if (arrow.need, arrow.step) == ("fetch", "report"))
    assert report.path.count(" L") == 2  # beside the layers of right/left and of join
    assert {(arrow.need, arrow.step) for arrow in graph.arrows} == {
        ("fetch", "right"),
        ("fetch", "left"),
        ("left", "join"),
        ("right", "join"),
        ("fetch", "report"),
        ("join", "report"),
    }
    assert not graph.wide  # shrinks to fit a phone
    four = ModelSpec.model_validate({"name": "four", "steps": {n: {"command": ["true"]} for n in "abcd"}})
    wide = structure_of(four)
    assert wide is not None and wide.wide  # scrolls sideways on a phone rather than shrink to nothing
    assert structure_of(ModelSpec.model_validate({"name": "single", "command": ["true"]})) is None
