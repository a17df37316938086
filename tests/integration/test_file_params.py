"""File parameters (``type: string, format: file``) through a real server: uploaded with the run
(multipart), kept content-addressed, read by the model from its inputs folder, and part of the
cache key by their content."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelrunner.settings import Settings
from modelrunner.spec.file_params import safe_filename
from tests.conftest import empty_database, wait_for_run
from tests.integration.runs_api import write_model
from tests.integration.served import Served

pytestmark = pytest.mark.xdist_group("file_params")  # one server for the module's tests

READER = (
    "import json, os, pathlib\n"
    "params = json.loads(pathlib.Path(os.environ['MODELRUNNER_PARAMS']).read_text())\n"
    "inputs = pathlib.Path(os.environ['MODELRUNNER_INPUTS'])\n"
    "network = inputs / params['network']\n"
    "listing = sorted(str(p.relative_to(inputs)) for p in inputs.rglob('*') if p.is_file())\n"
    "out = {'path': params['network'], 'text': network.read_text(), 'files': listing, 'scale': params['scale']}\n"
    "pathlib.Path(os.environ['MODELRUNNER_OUTPUTS'], 'seen.json').write_text(json.dumps(out))\n"
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("file-params")
    workspace = root / "workspace"
    workspace.mkdir()
    (workspace / "modelrunner.yaml").write_text(
        "name: uploads\nbackends:\n  local: {type: local}\n  pool: {type: worker, lease_seconds: 5}\n", encoding="utf-8"
    )
    write_model(
        workspace,
        "transport",
        "command: [python, read.py]\n"
        "params:\n  type: object\n  properties:\n"
        "    network: {type: string, format: file}\n    scale: {type: number, default: 1}\n"
        "  required: [network]\n"
        "outputs:\n  - path: seen.json\n",
        {"read.py": READER},
    )
    write_model(
        workspace,
        "transport-remote",
        "command: [python, read.py]\nbackend: pool\n"
        "params:\n  type: object\n  properties:\n"
        "    network: {type: string, format: file}\n    scale: {type: number, default: 1}\n"
        "outputs:\n  - path: seen.json\n",
        {"read.py": READER},
    )
    with empty_database(root / "state") as url:
        settings = Settings(
            workspace=workspace,
            data_dir=root / "state",
            database_url=url,
            local_slots=2,
            poll_seconds=0.2,
            max_upload_bytes=64 * 1024,
        )
        started = Served(settings)
        try:
            yield started
        finally:
            started.stop()


def upload(
    served: Served,
    files: dict[str, tuple[str, bytes]],
    request: dict[str, Any] | None = None,
    model: str = "transport",
) -> Any:
    return served.http.post(
        f"/api/v1/models/{model}/runs/upload",
        data={"request": json.dumps(request or {})},
        files={field: (name, content) for field, (name, content) in files.items()},
    )


def seen(served: Served, run_id: int) -> dict[str, Any]:
    run = wait_for_run(served.http.get, run_id)
    assert run["status"] == "succeeded", run
    answer = served.http.get(f"/api/v1/runs/{run_id}/outputs/seen.json")
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_the_model_reads_the_uploaded_file_and_the_same_file_again_is_a_cache_hit(served: Served) -> None:
    links = b'{"type": "FeatureCollection", "features": []}'
    first = upload(served, {"network": ("links.geojson", links)}, {"params": {"scale": 2}})
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["params"]["network"].startswith("sha256:") and body["params"]["network"].endswith("/links.geojson")
    result = seen(served, body["id"])
    assert result == {
        "path": "params/network/links.geojson",
        "text": links.decode(),
        "files": ["params/network/links.geojson"],
        "scale": 2,
    }

    again = upload(served, {"network": ("links.geojson", links)}, {"params": {"scale": 2}})
    assert again.status_code == 200, again.text
    assert again.json()["cache_hit"] is True and again.json()["source_run_id"] == body["id"]

    other = upload(served, {"network": ("links.geojson", links + b" ")}, {"params": {"scale": 2}})
    assert other.status_code == 201, other.text
    assert other.json()["cache_key"] != body["cache_key"]
    assert seen(served, other.json()["id"])["text"] == links.decode() + " "


def test_a_hostile_file_name_is_made_one_plain_name_in_the_model_folder(served: Served) -> None:
    for hostile, expected in [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("evil\x00.sh", "evil.sh"),
        ("." * 300, "upload"),
        ("a" * 500 + ".geojson", "a" * (120 - len(".geojson")) + ".geojson"),
    ]:
        assert safe_filename(hostile) == expected
    answer = upload(served, {"network": ("../../etc/passwd", b"root:x:0:0")})
    assert answer.status_code == 201, answer.text
    result = seen(served, answer.json()["id"])
    assert result["path"] == "params/network/passwd"
    assert result["files"] == ["params/network/passwd"] and result["text"] == "root:x:0:0"
    long_name = upload(served, {"network": ("x" * 600 + ".csv", b"a,b\n")})
    assert long_name.status_code == 201, long_name.text
    assert seen(served, long_name.json()["id"])["path"] == f"params/network/{'x' * 116}.csv"
    # A name longer than a multipart part's headers may be is refused before anything is stored.
    too_long = upload(served, {"network": ("x" * 20000 + ".csv", b"a,b\n")})
    assert too_long.status_code == 400 and too_long.json()["detail"], too_long.text


def test_refusals_name_what_is_wrong_and_submit_nothing(served: Served) -> None:
    before = served.http.get("/api/v1/runs", params={"model": "transport", "limit": 500}).json()
    too_large = upload(served, {"network": ("big.bin", b"x" * (64 * 1024 + 1))})
    assert too_large.status_code == 413, too_large.text
    assert "max_upload_bytes" in too_large.json()["detail"]
    not_a_file_param = upload(served, {"scale": ("s.txt", b"2"), "network": ("n.json", b"{}")})
    assert not_a_file_param.status_code == 422, not_a_file_param.text
    assert "params.scale" in not_a_file_param.text and "network" in not_a_file_param.text
    by_path = served.http.post("/api/v1/models/transport/runs", json={"params": {"network": "/etc/passwd"}})
    assert by_path.status_code == 422, by_path.text
    assert "params.network" in by_path.text and "uploaded file" in by_path.text
    unknown = served.http.post(
        "/api/v1/models/transport/runs", json={"params": {"network": f"sha256:{'0' * 64}/links.geojson"}}
    )
    assert unknown.status_code == 422, unknown.text
    assert "no uploaded file" in unknown.text
    after = served.http.get("/api/v1/runs", params={"model": "transport", "limit": 500}).json()
    assert len(after["items"]) == len(before["items"])


def test_stored_once_by_content(served: Served, tmp_path: Path) -> None:
    content = b"same bytes under two names"
    a = upload(served, {"network": ("a.txt", content)})
    b = upload(served, {"network": ("b.txt", content)})
    assert a.status_code == b.status_code == 201
    assert a.json()["params"]["network"].split("/")[0] == b.json()["params"]["network"].split("/")[0]
    store = served.platform.artifacts
    assert len(store.keys("uploads")) == len({k for k in store.keys("uploads")})
    digest = a.json()["params"]["network"].split("/")[0].removeprefix("sha256:")
    assert store.keys(f"uploads/{digest}") == [f"uploads/{digest}"]


def test_the_cli_uploads_a_file_parameter_with_at(served: Served, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.identities import token_for

    env = {
        **os.environ,
        "MODELRUNNER_SERVER": served.url,
        "MODELRUNNER_TOKEN": token_for(served.platform.database, "admin"),
    }
    links = tmp_path / "links.geojson"
    links.write_bytes(b'{"type": "FeatureCollection", "features": [1]}')

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "modelrunner", *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert "Traceback" not in done.stdout + done.stderr, done.stderr
        return done

    first = cli("run", "transport", "-p", f"network=@{links}", "-p", "scale=3", "--json")
    assert first.returncode == 0, first.stderr
    run = json.loads(first.stdout)
    assert run["params"]["network"].endswith("/links.geojson")
    assert seen(served, run["id"])["text"] == links.read_text()
    again = json.loads(cli("run", "transport", "-p", f"network=@{links}", "-p", "scale=3", "--json").stdout)
    assert again["cache_hit"] is True and again["source_run_id"] == run["id"]

    missing = cli("run", "transport", "-p", f"network=@{tmp_path / 'nope.geojson'}")
    assert missing.returncode != 0 and "no such file" in missing.stderr and len(missing.stderr.splitlines()) == 1
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (64 * 1024 + 10))
    refused = cli("run", "transport", "-p", f"network=@{big}")
    assert refused.returncode != 0 and "max_upload_bytes" in refused.stderr, refused.stderr


def test_a_remote_worker_gets_the_uploaded_file(served: Served, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.identities import token_for

    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELRUNNER_")}
    env.update(
        MODELRUNNER_SERVER=served.url,
        MODELRUNNER_TOKEN=token_for(served.platform.database, "admin"),
        MODELRUNNER_WORKDIR=str(tmp_path / "worker"),
    )
    (tmp_path / "worker").mkdir()
    log = tmp_path / "worker.log"
    with log.open("wb") as output:
        worker = subprocess.Popen(
            [sys.executable, "-m", "modelrunner", "worker", "--pool", "pool"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        links = b'{"remote": true}'
        answer = upload(served, {"network": ("remote links.geojson", links)}, model="transport-remote")
        assert answer.status_code == 201, answer.text
        try:
            run = wait_for_run(served.http.get, answer.json()["id"], timeout=90)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{log.read_text(errors='replace')}") from exc
        assert run["status"] == "succeeded", (run, log.read_text(errors="replace"))
        assert run["backend"] == "pool"
        result = served.http.get(f"/api/v1/runs/{run['id']}/outputs/seen.json").json()
        assert result["path"] == "params/network/remote_links.geojson" and result["text"] == links.decode()
    finally:
        worker.terminate()
        worker.wait(timeout=30)
