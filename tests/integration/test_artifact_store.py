"""Outputs go to whatever fsspec URL the artifact store is given, not only a local folder."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from modelrunner.artifacts.store import ArtifactStore
from modelrunner.platform import Platform
from modelrunner.settings import Settings
from tests.conftest import admin_client, wait_for_run


@pytest.fixture
def memory_client(settings: Settings) -> Iterator[tuple[TestClient, str]]:
    url = f"memory://modelrunner-{uuid.uuid4().hex[:8]}"
    platform = Platform(settings.model_copy(update={"artifacts_url": url}))
    with admin_client(platform) as client:
        yield client, url


def test_outputs_are_stored_and_served_from_an_fsspec_url(memory_client: tuple[TestClient, str]) -> None:
    client, url = memory_client
    run = client.post("/api/v1/models/noop/runs", json={"params": {"n": 7}}).json()
    done = wait_for_run(client.get, run["id"])
    assert done["status"] == "succeeded"
    [output] = done["outputs"]
    body = client.get(output["url"]).content
    assert b'"n": 7' in body
    assert hashlib.sha256(body).hexdigest() == output["sha256"] and len(body) == output["size"]
    # The bytes live in the memory filesystem, not in the state folder.
    store = ArtifactStore(url)
    assert store.exists(f"runs/{run['id']}/attempts/1/outputs/params.json")


def test_put_folder_hashes_every_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "out"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_bytes(b"alpha")
    (folder / "sub" / "b.bin").write_bytes(bytes(range(256)) * 10)
    store = ArtifactStore(f"memory://put-{uuid.uuid4().hex[:8]}")
    stored = store.put_folder(folder, "prefix")
    assert [s.path for s in stored] == ["a.txt", "sub/b.bin"]
    for item in stored:
        data = (folder / item.path).read_bytes()
        assert item.size == len(data) and item.sha256 == hashlib.sha256(data).hexdigest()
        assert store.get_bytes(item.uri) == data
