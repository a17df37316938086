"""Model folders with links, served: a model that links to files elsewhere in its workspace runs
(its snapshot holds the files, not the links); replacing the links by copies of the same content
is the same version, answered from the cache; a snapshot recorded with a link before links were
followed is made again at the next submit, so the run works; a link that leaves the workspace
makes the submit a 422 naming it."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelrunner.engine.cache_mode import CacheMode
from modelrunner.engine.submit import Submitter
from modelrunner.platform import Platform
from modelrunner.settings import Settings
from tests.conftest import wait_for_run
from tests.integration.runs_api import submit

MODEL = "linker"
SCRIPT = """\
import os
from pathlib import Path

out = Path(os.environ["MODELRUNNER_OUTPUTS"]) / "out.txt"
out.write_text(Path("common.txt").read_text() + Path("lib/helper.txt").read_text())
"""


@pytest.fixture
def settings(settings: Settings) -> Settings:
    root = settings.workspace
    (root / "shared" / "lib").mkdir(parents=True)
    (root / "shared" / "common.txt").write_text("common\n")
    (root / "shared" / "lib" / "helper.txt").write_text("helper\n")
    model = root / MODEL
    model.mkdir()
    (model / "model.yaml").write_text(f"name: {MODEL}\ncommand: [python, run.py]\n")
    (model / "run.py").write_text(SCRIPT)
    os.symlink("../shared/common.txt", model / "common.txt")
    os.symlink("../shared/lib", model / "lib")
    return settings


def output(client: TestClient, run_id: int) -> str:
    response = client.get(f"/api/v1/runs/{run_id}/outputs/out.txt")
    assert response.status_code == 200, response.text
    return response.text


def test_linked_files_run_and_copies_of_them_are_the_same_version(
    client: TestClient, platform: Platform, settings: Settings
) -> None:
    first = wait_for_run(client.get, submit(client, MODEL)["id"])
    assert first["status"] == "succeeded", first["error"]
    assert output(client, first["id"]) == "common\nhelper\n"

    model = settings.workspace / MODEL
    (model / "common.txt").unlink()
    (model / "lib").unlink()
    shutil.copy(settings.workspace / "shared" / "common.txt", model / "common.txt")
    shutil.copytree(settings.workspace / "shared" / "lib", model / "lib")
    again = submit(client, MODEL)
    assert (again["cache_hit"], again["model_version"]) == (True, first["model_version"])

    # A snapshot recorded with links, as before links were followed: the next submit (of a
    # server started anew) makes it again, and the run it computes works.
    legacy = io.BytesIO()
    with tarfile.open(fileobj=legacy, mode="w:gz") as archive:
        for name in ("model.yaml", "run.py"):
            archive.add(model / name, arcname=name)
        link = tarfile.TarInfo("common.txt")
        link.type, link.linkname = tarfile.SYMTYPE, "../shared/common.txt"
        archive.addfile(link)
    uri = platform.artifacts.put_bytes(f"models/{MODEL}/{first['model_version']}.tar.gz", legacy.getvalue())
    restarted = Submitter(platform.database, platform.workspace, platform.artifacts)
    recomputed = restarted.submit(MODEL, {}, cache=CacheMode.REFRESH)
    with tarfile.open(fileobj=io.BytesIO(platform.artifacts.get_bytes(uri)), mode="r:gz") as snapshot:
        members = sorted((m.name, m.isfile()) for m in snapshot)
    assert members == [
        ("common.txt", True),
        ("lib/helper.txt", True),
        ("model.yaml", True),
        ("run.py", True),
    ]
    run = wait_for_run(client.get, recomputed.run.id)
    assert run["status"] == "succeeded", run["error"]
    assert output(client, run["id"]) == "common\nhelper\n"


def test_a_link_out_of_the_workspace_is_refused_at_submit(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    secret = tmp_path / "elsewhere" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("not the model's\n")
    model = settings.workspace / MODEL
    (model / "common.txt").unlink()
    os.symlink(secret, model / "common.txt")

    response = client.post(f"/api/v1/models/{MODEL}/runs", json={"params": {}})
    assert response.status_code == 422, response.text
    assert f"common.txt links to {secret}, outside the workspace" in response.text
    assert "not the model's" not in response.text
