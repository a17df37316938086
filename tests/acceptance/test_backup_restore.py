"""``modelrunner db backup`` of a running server's store and ``db restore`` into a new one: a
server on the restored store finds every run, model version, user, log and output (byte for
byte), and runs the backed-up model versions again. On SQLite and PostgreSQL alike."""

from __future__ import annotations

import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelrunner.store import backup, migrate
from modelrunner.store.database import Database
from tests.acceptance.test_cli import cli
from tests.conftest import NEEDS_PG_TOOLS, Server, empty_database, wait_for_run
from tests.identities import add_user

pytestmark = NEEDS_PG_TOOLS


@pytest.fixture
def other_database_url(tmp_path: Path) -> Iterator[str]:
    """A second empty database, of the kind the suite runs on: the store restored into."""
    with empty_database(tmp_path / "restored") as url:
        yield url


def snapshot(http: httpx.Client) -> dict[str, Any]:
    """What a user sees of the store: runs (with their attempts, outputs and logs), output bytes, users."""
    runs = http.get("/api/v1/runs", params={"limit": 100}).json()["items"]
    details = {run["id"]: http.get(f"/api/v1/runs/{run['id']}").json() for run in runs}
    return {
        "runs": {
            run_id: {
                key: run[key]
                for key in ("status", "model", "model_version", "params", "cache_key", "submitted_by", "finished_at")
            }
            | {"attempts": [(a["number"], a["status"]) for a in run["attempts"]]}
            for run_id, run in details.items()
        },
        "outputs": {
            (run_id, output["path"]): http.get(f"/api/v1/runs/{run_id}/outputs/{output['path']}").content
            for run_id, run in details.items()
            for output in run["outputs"]
        },
        "logs": {run_id: http.get(f"/api/v1/runs/{run_id}/logs").content for run_id in details},
        "users": sorted(user["name"] for user in http.get("/api/v1/users").json()),
    }


def test_a_running_servers_backup_restores_into_a_new_store(
    server: Server, tmp_path: Path, other_database_url: str
) -> None:
    add_user(Database(server.env["MODELRUNNER_DATABASE_URL"]), "ada", groups=["forecasters"])
    archive = tmp_path / "backups" / "store.tar.gz"
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
        finished = [http.post("/api/v1/models/noop/runs", json={"params": {"n": n}}).json() for n in range(3)]
        for run in finished:
            wait_for_run(http.get, run["id"])
        # A run still going while the backup is taken: the backup must not wait for it or break it.
        going = http.post("/api/v1/models/sleeper/runs", json={"params": {"seconds": 3}}).json()
        backed_up = cli("db", "backup", str(archive), env=server.env)
        assert backed_up.returncode == 0, backed_up.stderr
        assert wait_for_run(http.get, going["id"])["status"] == "succeeded"
        before = snapshot(http)

    assert "the database, " in backed_up.stdout and "artifact files" in backed_up.stdout
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert names[0] == "modelrunner-backup.json"
    assert any(name.startswith("artifacts/models/noop/") for name in names)  # the model snapshot
    assert not any("secrets.key" in name or "session.key" in name for name in names)

    restored_env = dict(server.env)
    restored_env.pop("MODELRUNNER_TOKEN")
    restored_env.update(MODELRUNNER_DATA_DIR=str(tmp_path / "restored"), MODELRUNNER_DATABASE_URL=other_database_url)
    restored = cli("db", "restore", str(archive), env=restored_env)
    assert restored.returncode == 0, restored.stderr
    assert "4 runs" in restored.stdout

    again = Server(restored_env, tmp_path / "restored-server.log")
    again.start()
    try:
        with httpx.Client(base_url=again.url, headers=again.headers, timeout=30) as http:
            after = snapshot(http)
            # The sleeper was running when the database was copied: the restored store has it as
            # the server left it then, and retries it as after a crash.
            going_after = wait_for_run(http.get, going["id"], timeout=60)
            # The backed-up model version runs again from its restored snapshot, and the cache answers.
            new = http.post("/api/v1/models/noop/runs", json={"params": {"n": 7}}).json()
            new_run = wait_for_run(http.get, new["id"])
            cached = http.post("/api/v1/models/noop/runs", json={"params": {"n": 1}}).json()
    finally:
        again.stop()

    done = {run_id for run_id, run in before["runs"].items() if run_id != going["id"]}
    assert {i: after["runs"][i] for i in done} == {i: before["runs"][i] for i in done}
    assert {k: v for k, v in after["outputs"].items() if k[0] in done} == {
        k: v for k, v in before["outputs"].items() if k[0] in done
    }
    assert b'"n": 2' in after["outputs"][(finished[2]["id"], "params.json")]
    assert {i: after["logs"][i] for i in done} == {i: before["logs"][i] for i in done}
    assert after["users"] == before["users"] == ["ada", "admin"]
    assert going_after["status"] == "succeeded"
    assert (
        new_run["status"] == "succeeded"
        and new_run["model_version"] == before["runs"][finished[0]["id"]]["model_version"]
    )
    assert cached["cache_hit"] and cached["source_run_id"] == finished[1]["id"]


def test_restore_refuses_a_store_that_is_not_empty_and_changes_nothing(server: Server, tmp_path: Path) -> None:
    archive = tmp_path / "store.tar"
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
        first = http.post("/api/v1/models/noop/runs", json={"params": {"n": 1}}).json()
        wait_for_run(http.get, first["id"])
        assert cli("db", "backup", str(archive), env=server.env).returncode == 0
        second = http.post("/api/v1/models/noop/runs", json={"params": {"n": 2}}).json()
        wait_for_run(http.get, second["id"])

        refused = cli("db", "restore", str(archive), env=server.env)
        runs = http.get("/api/v1/runs").json()["items"]

    assert refused.returncode == 1
    assert "this store is not empty (it holds 2 runs" in refused.stderr
    assert "--force" in refused.stderr and "Traceback" not in refused.stderr
    assert {run["id"] for run in runs} == {first["id"], second["id"]}


def test_restore_force_replaces_the_store(server: Server, tmp_path: Path) -> None:
    archive = tmp_path / "store.tar"
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
        first = http.post("/api/v1/models/noop/runs", json={"params": {"n": 1}}).json()
        wait_for_run(http.get, first["id"])
        assert cli("db", "backup", str(archive), env=server.env).returncode == 0
        later = http.post("/api/v1/models/noop/runs", json={"params": {"n": 2}}).json()
        wait_for_run(http.get, later["id"])
    server.stop()

    forced = cli("db", "restore", "--force", str(archive), env=server.env)
    assert forced.returncode == 0, forced.stderr
    server.start()
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
        runs = http.get("/api/v1/runs").json()["items"]
        log = http.get(f"/api/v1/runs/{first['id']}/logs")

    assert [run["id"] for run in runs] == [first["id"]]
    assert log.status_code == 200


@pytest.mark.store_free
def test_restore_refuses_what_is_not_a_backup(tmp_path: Path) -> None:
    not_a_backup = tmp_path / "notes.tar"
    with tarfile.open(not_a_backup, "w") as tar:
        tar.add(Path(__file__), "notes.py")
    env = {"MODELRUNNER_DATA_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"}

    refused = cli("db", "restore", str(not_a_backup), env=env)
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"no tar at all")
    unreadable = cli("db", "restore", str(garbage), env=env)

    assert refused.returncode == 1 and "is not a modelrunner backup" in refused.stderr
    assert unreadable.returncode == 1 and "cannot read the backup" in unreadable.stderr
    assert "Traceback" not in refused.stderr + unreadable.stderr
    assert not (tmp_path / "state" / "modelrunner.db").exists()
    assert not (tmp_path / "state" / "logs").exists()


@pytest.mark.store_free
def test_a_backup_is_never_written_into_what_it_backs_up(tmp_path: Path) -> None:
    env = {"MODELRUNNER_DATA_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"}

    refused = cli("db", "backup", str(tmp_path / "state" / "artifacts" / "backup.tar"), env=env)

    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "would be inside" in refused.stderr and "write it elsewhere" in refused.stderr
    assert not (tmp_path / "state" / "artifacts" / "backup.tar").exists()


class NoProgress:
    def stage(self, description: str, total: int | None) -> None:
        pass

    def advance(self, n_bytes: int) -> None:
        pass


def test_a_backup_without_its_artifact_store_restores_only_onto_that_store(
    database_url: str, other_database_url: str, tmp_path: Path
) -> None:
    """An artifact store that is not a local folder is not copied: the outputs the database names
    are only there, so a restore that would look for them elsewhere is refused."""
    elsewhere = f"memory://modelrunner-{uuid.uuid4().hex}"
    source = Database(database_url)
    migrate.upgrade(source)
    manifest = backup.backup(source, tmp_path / "logs", elsewhere, tmp_path / "store.tar", NoProgress())
    source.dispose()
    target = Database(other_database_url)

    with pytest.raises(backup.BackupError, match=f"the outputs of this backup are in the artifact store {elsewhere}"):
        backup.restore(
            target, tmp_path / "restored-logs", str(tmp_path / "artifacts"), tmp_path / "store.tar", NoProgress()
        )
    assert migrate.current_revision(target) is None  # refused before anything was written
    restored = backup.restore(target, tmp_path / "restored-logs", elsewhere, tmp_path / "store.tar", NoProgress())
    target.dispose()

    assert not manifest.artifacts_included and manifest.artifacts_url == elsewhere
    assert restored.counts["runs"] == 0 and restored.manifest.revision == manifest.revision
