"""Every route that takes a path or a key, walked with hostile keys: none reads, lists or writes
anything outside what it serves. Canaries planted next to the artifact store (a unique file,
the server's session key, /etc/hostname) must never show up in a response.

The attacker holds a worker attempt's callback token (it claims the attempt itself) and a site
admin's session, so permissions do not stop them: only the confinement of paths does."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
import yaml
from fastapi import APIRouter
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from modelrunner.api import app as app_module
from modelrunner.api.app import create_app
from modelrunner.artifacts.keys import UnsafeKey
from modelrunner.platform import Platform
from modelrunner.store import queries
from modelrunner.store.partial_output_queries import add_partial_outputs
from tests.conftest import wait_for_run
from tests.identities import add_user, bearer
from tests.integration.runs_api import write_model
from tests.integration.test_web_pages import PASSWORD, signed_in

HOSTNAME = Path("/etc/hostname")

# Keys as they appear in a URL (percent-encoded as an attacker sends them); {run}, {attempt}
# name the attacker's own attempt, {other} another run, so each key starts inside what the
# attacker may read and then tries to leave it.
UP = "%2e%2e/" * 30  # more than enough to reach / from the artifact store
HOSTILE = [
    "runs/{run}/attempts/%2e%2e/%2e%2e/%2e%2e/%2e%2e/session.key",  # as reported: the state folder
    "runs/{run}/attempts/%2e%2e/%2e%2e/%2e%2e/%2e%2e/canary.txt",
    "runs/{run}/attempts/%2E%2E/%2E%2E/%2E%2E/%2E%2E/modelrunner.db",
    "runs/{run}/attempts/{attempt}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/canary.txt",
    "runs/{run}/attempts/{attempt}/outputs/" + UP + "etc/hostname",
    "runs/{run}/attempts/..%2f..%2f..%2f..%2fcanary.txt",
    "runs/{run}/attempts/%252e%252e/%252e%252e/%252e%252e/%252e%252e/canary.txt",
    "runs/{run}/attempts/{attempt}/a/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/canary.txt",
    "%2e%2e/canary.txt",
    "/etc/hostname",
    "%2fetc%2fhostname",
    "runs/{run}/attempts/%5c..%5c..%5c..%5c..%5ccanary.txt",
    "runs/{run}/attempts/{attempt}/canary.txt%00",
    "runs/{run}/attempts/{attempt}//canary.txt",
    "runs/{run}/attempts/{attempt}/outputs/leak.txt",  # a symbolic link to the canary
    "runs/{run}/attempts/{attempt}/up/canary.txt",  # a symbolic link to the state folder
    "runs/{other}/attempts/1/outputs/params.json",  # another run's output
]


@pytest.fixture
def workspace(workspace: Path) -> Path:
    """The local backend, and a worker pool that only the test's attacker claims from."""
    config = workspace / "modelrunner.yaml"
    spec = yaml.safe_load(config.read_text())
    spec.update(backends={"local": {"type": "local"}, "pool": {"type": "worker", "lease_seconds": 120}})
    spec.setdefault("datasets", {})["notes"] = {"source": "managed"}  # written through the API
    config.write_text(yaml.safe_dump({**spec, "default_backend": "local"}))
    write_model(workspace, "held", 'backend: pool\ncommand: ["python", "-c", "pass"]\n')
    return workspace


@dataclass
class Scene:
    client: TestClient  # a site admin's signed-in browser (and the API with an admin token)
    admin: dict[str, str]
    worker: dict[str, str]  # the claimed attempt's callback token
    attempt_id: int
    run: int  # the claimed attempt's run
    other: int  # a run on the local backend, with an output
    state: Path
    artifacts: Path
    secrets: list[bytes]  # none of these may appear in a response

    def key(self, template: str) -> str:
        return template.format(run=self.run, attempt=1, other=self.other)


@pytest.fixture
def scene(platform: Platform) -> Iterator[Scene]:
    state = platform.settings.state_dir
    artifacts = Path(platform.artifacts.root)
    canary = f"canary-{uuid.uuid4().hex}".encode()
    (state / "canary.txt").write_bytes(canary)
    with TestClient(create_app(platform), follow_redirects=False) as client:
        admin = bearer(add_user(platform.database, "ada", admin=True, password=PASSWORD))
        signed_in(client, "ada")
        other = client.post("/api/v1/models/noop/runs", json={"params": {"label": "theirs"}}, headers=admin).json()
        assert wait_for_run(lambda p: client.get(p, headers=admin), other["id"])["status"] == "succeeded"
        held = client.post("/api/v1/models/held/runs", json={"params": {}}, headers=admin).json()
        claimed = client.post("/api/v1/pools/pool/claim", params={"wait": 15}, json={"worker": "x"}, headers=admin)
        assert claimed.status_code == 200, claimed.text
        attempt = claimed.json()
        assert attempt["job"]["run_id"] == held["id"]
        own = artifacts / "runs" / str(held["id"]) / "attempts" / "1"
        (own / "outputs").mkdir(parents=True)
        (own / "outputs" / "leak.txt").symlink_to(state / "canary.txt")
        (own / "up").symlink_to(state)
        secrets = [canary, (state / "session.key").read_bytes()] if (state / "session.key").exists() else [canary]
        yield Scene(
            client,
            admin,
            bearer(attempt["callback_token"]),
            attempt["attempt_id"],
            held["id"],
            other["id"],
            state,
            artifacts,
            secrets,
        )


def refused(scene: Scene, response: httpx.Response, what: str) -> None:
    """A 400, 403 or 404 that shows none of the secrets (nor /etc/hostname's content)."""
    assert response.status_code in (400, 403, 404), f"{what}: {response.status_code} {response.text[:300]}"
    for secret in scene.secrets:
        assert secret not in response.content, f"{what}: a secret file's content is in the response"
    assert response.content.strip() != HOSTNAME.read_bytes().strip(), f"{what}: /etc/hostname's content"


def explained(response: httpx.Response) -> str:
    """The JSON error's message (an API route answers with one)."""
    detail = response.json()["detail"]
    return detail if isinstance(detail, str) else str(detail)


def test_the_worker_file_routes_serve_only_the_attempts_own_files_and_inputs(scene: Scene) -> None:
    client = scene.client
    base = f"/api/v1/attempts/{scene.attempt_id}/files"
    for template in HOSTILE:
        key = scene.key(template)
        got = client.get(f"{base}/{key}", headers=scene.worker)
        refused(scene, got, f"GET {key}")
        assert explained(got)
        listed = client.get(base, params={"prefix": unquote(key)}, headers=scene.worker)
        refused(scene, listed, f"list {unquote(key)}")
        planted = key.replace("canary.txt", "planted.txt").replace("session.key", "planted.txt")
        put = client.put(f"{base}/{planted}", content=b"planted", headers=scene.worker)
        refused(scene, put, f"PUT {planted}")
    assert not list(scene.state.rglob("planted.txt")), "a refused upload left a file"
    assert not (Path("/etc") / "planted.txt").exists()


def test_hostile_keys_are_refused_as_bad_requests_naming_the_key(scene: Scene) -> None:
    base = f"/api/v1/attempts/{scene.attempt_id}/files"
    for key, problem in [
        (f"runs/{scene.run}/attempts/1/%2e%2e/%2e%2e/%2e%2e/%2e%2e/session.key", "'..' segment"),
        (f"runs/{scene.run}/attempts/1/%252e%252e/x", "'..' segment"),
        (f"runs/{scene.run}/attempts/1/%5c..%5cx", "backslash"),
        (f"runs/{scene.run}/attempts/1/x%00", "NUL"),
        ("/etc/hostname", "absolute"),
        (f"runs/{scene.run}/attempts/1/up/canary.txt", "symbolic link"),
    ]:
        got = scene.client.get(f"{base}/{key}", headers=scene.worker)
        assert got.status_code == 400, (key, got.status_code, got.text)
        assert problem in explained(got), (key, explained(got))


def test_the_listing_shows_the_attempts_own_files_and_nothing_through_a_link(scene: Scene) -> None:
    base = f"/api/v1/attempts/{scene.attempt_id}/files"
    own = scene.artifacts / "runs" / str(scene.run) / "attempts" / "1"
    (own / "outputs" / "real.txt").write_text("mine")
    listed = scene.client.get(base, params={"prefix": f"runs/{scene.run}/attempts/1"}, headers=scene.worker)
    assert listed.status_code == 200, listed.text
    assert listed.json()["keys"] == [f"runs/{scene.run}/attempts/1/outputs/real.txt"]
    got = scene.client.get(f"{base}/runs/{scene.run}/attempts/1/outputs/real.txt", headers=scene.worker)
    assert got.status_code == 200 and got.content == b"mine"
    # The model snapshot is the attempt's input: readable. The run's other folders are not.
    job = scene.client.get(f"/api/v1/runs/{scene.run}", headers=scene.admin).json()
    assert job["status"] in ("queued", "starting", "running")
    outside_attempt = scene.client.get(base, params={"prefix": f"runs/{scene.run}"}, headers=scene.worker)
    refused(scene, outside_attempt, "the run's folder")


def test_a_worker_cannot_report_outputs_outside_its_outputs_folder(scene: Scene, platform: Platform) -> None:
    finish = f"/api/v1/attempts/{scene.attempt_id}/finish"
    store = platform.artifacts.url
    own = f"{store}/runs/{scene.run}/attempts/1/outputs"
    for path, uri in [
        ("hostname", "file:///etc/hostname"),
        ("canary.txt", f"{own}/../../../../../canary.txt"),
        ("../../../canary.txt", f"{own}/../../../canary.txt"),
        ("params.json", f"{store}/runs/{scene.other}/attempts/1/outputs/params.json"),
    ]:
        output = {"path": path, "size": 1, "sha256": "0" * 64, "uri": uri}
        report = {"status": "succeeded", "exit_code": 0, "outputs": [output]}
        answer = scene.client.post(finish, json=report, headers=scene.worker)
        refused(scene, answer, f"finish with {path} at {uri}")
    with platform.database.read() as session:
        assert queries.outputs_of(session, scene.run) == []


def test_output_routes_serve_only_the_runs_own_stored_outputs(scene: Scene, platform: Platform) -> None:
    """The API's download, the web's download and result page. Hostile paths find no output;
    output records that point outside the store (planted straight into the database, as a
    compromised runner of the past could have left them) are refused when read."""
    store = platform.artifacts.url
    planted = {
        "escape.csv": f"{store}/runs/{scene.other}/attempts/1/outputs/../../../../../canary.txt",
        "absolute.csv": "file:///etc/hostname",
        "linked.csv": f"{store}/runs/{scene.run}/attempts/1/outputs/leak.txt",
    }
    rows = [{"path": p, "size": 1, "sha256": "0" * 64, "uri": u} for p, u in planted.items()]
    with platform.database.write() as session:
        queries.add_outputs(session, scene.other, rows)
        # The same records as partial outputs of its attempt: read through the attempt's routes.
        add_partial_outputs(session, queries.attempts_of(session, scene.other)[0].id, rows)
    routes = [
        f"/api/v1/runs/{scene.other}/outputs/{{key}}",
        f"/runs/{scene.other}/outputs/{{key}}",
        f"/runs/{scene.other}/results/{{key}}",
        f"/runs/{scene.other}/view/{{key}}",
        f"/api/v1/runs/{scene.other}/attempts/1/outputs/{{key}}",
        f"/runs/{scene.other}/attempts/1/outputs/{{key}}",
        f"/runs/{scene.other}/attempts/1/view/{{key}}",
    ]
    keys = [scene.key(t) for t in HOSTILE] + ["%2e%2e/%2e%2e/%2e%2e/canary.txt", *planted]
    for route in routes:
        for key in keys:
            refused(scene, scene.client.get(route.format(key=key), headers=scene.admin), f"{route} {key}")
    fine = scene.client.get(f"/api/v1/runs/{scene.other}/outputs/params.json", headers=scene.admin)
    assert fine.status_code == 200 and b"theirs" in fine.content


def test_named_routes_take_hostile_names_as_unknown(scene: Scene) -> None:
    """Schedules, triggers and dataset versions are looked up by name, never as files."""
    for route in [
        "/api/v1/schedules/{key}/firings",
        "/api/v1/triggers/{key}/firings",
        "/api/v1/datasets/{key}/versions/{key}",
        "/api/v1/datasets/cases/versions/{key}",
        "/datasets/{key}",
    ]:
        for template in HOSTILE:
            key = scene.key(template)
            refused(scene, scene.client.get(route.format(key=key), headers=scene.admin), f"{route} {key}")
    for template in HOSTILE:
        key = scene.key(template)
        ran = scene.client.post(f"/api/v1/schedules/{key}/run", headers=scene.admin)
        refused(scene, ran, f"run schedule {key}")


def test_a_managed_datasets_files_are_written_and_removed_only_inside_it(scene: Scene) -> None:
    """Writes with hostile paths are refused (422 names an unsafe path); a key that is only
    hostile in the artifact store (``runs/2/.../leak.txt``) is a fine path inside the dataset and
    is written there. Either way every file outside the dataset stays as it was."""
    before = {p: p.stat().st_mtime_ns for p in scene.state.rglob("*") if p.is_file()}
    for template in HOSTILE:
        key = scene.key(template)
        for method in ("PUT", "DELETE"):
            answer = scene.client.request(
                method, f"/api/v1/datasets/notes/files/{key}", content=b"overwritten", headers=scene.admin
            )
            said = f"{method} {key}: {answer.status_code} {answer.text}"
            assert answer.status_code in (201, 400, 403, 404, 422), said
            for secret in scene.secrets:
                assert secret not in answer.content, f"{method} {key}: a secret file's content is in the response"
    changed = [p for p, mtime in before.items() if not p.exists() or p.stat().st_mtime_ns != mtime]
    assert [p for p in changed if "notes" not in p.parts and p.suffix not in (".db", ".db-wal", ".db-shm")] == []
    assert b"overwritten" not in (scene.state / "canary.txt").read_bytes()
    fine = scene.client.put("/api/v1/datasets/notes/files/a/b.txt", content=b"kept", headers=scene.admin)
    assert fine.status_code == 201, fine.text


# Every route with a path-like parameter, and the test above that walks it: a new such route
# fails here until it is walked too.
WALKED = {
    "GET /api/v1/attempts/{attempt_id}/files/{key:path}": "worker file routes",
    "PUT /api/v1/attempts/{attempt_id}/files/{key:path}": "worker file routes",
    "GET /api/v1/attempts/{attempt_id}/files": "worker file routes",
    "GET /api/v1/runs/{run_id}/outputs/{path:path}": "output routes",
    "GET /runs/{run_id}/outputs/{path:path}": "output routes",
    "GET /runs/{run_id}/results/{path:path}": "output routes",
    "GET /runs/{run_id}/view/{path:path}": "output routes",
    "GET /api/v1/runs/{run_id}/attempts/{number}/outputs/{path:path}": "output routes",
    "GET /runs/{run_id}/attempts/{number}/outputs/{path:path}": "output routes",
    "GET /runs/{run_id}/attempts/{number}/view/{path:path}": "output routes",
    "PUT /api/v1/datasets/{name}/files/{path:path}": "managed dataset routes",
    "DELETE /api/v1/datasets/{name}/files/{path:path}": "managed dataset routes",
    "POST /api/v1/schedules/{name:path}/run": "named routes",
    "GET /api/v1/schedules/{name:path}/firings": "named routes",
    "GET /api/v1/triggers/{name:path}/firings": "named routes",
    "GET /api/v1/datasets/{name}/versions/{version}": "named routes",
}
_PATH_LIKE = {"path", "key", "prefix", "version"}


def test_every_route_that_takes_a_path_or_a_key_is_walked() -> None:
    found = set()
    routers = [r for r in vars(app_module).values() if isinstance(r, APIRouter)]
    for route in (route for router in routers for route in router.routes):
        if not isinstance(route, APIRoute):
            continue
        # The app serves the API's routers under /api/v1, the web pages' at the root.
        path = f"/api/v1{route.path}" if route.endpoint.__module__.startswith("modelrunner.api.") else route.path
        names = {p.name for p in route.dependant.path_params + route.dependant.query_params}
        if ":path}" in path or names & _PATH_LIKE:
            found |= {f"{method} {path}" for method in route.methods}
    assert found == set(WALKED)


def test_the_data_cache_does_not_follow_a_symbolic_link_out_of_it(platform: Platform) -> None:
    root = platform.settings.state_dir / "data" / "versions"
    root.mkdir(parents=True, exist_ok=True)
    (root / "cases").symlink_to(platform.settings.state_dir)
    with pytest.raises(UnsafeKey, match="symbolic link"):
        platform.data_cache.folder("cases", "0" * 40)
    with pytest.raises(UnsafeKey, match="one folder name"):
        platform.data_cache.folder("cases", "../../x")
