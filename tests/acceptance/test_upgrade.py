"""A store made by an earlier modelrunner (commit 1e4c549, schema revision 0005; made by
tests/fixtures/upgrade/make_store.py) is restored, migrated to head by ``modelrunner db upgrade``,
and served by this one with nothing lost: every run, attempt, log, output, model version, dataset
version, user and subscription reads as the earlier server showed it, and the webhook secret it
kept in clear is now encrypted. On SQLite, and on PostgreSQL from a pg_dump of the same store."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import httpx
from alembic.script import ScriptDirectory
from sqlalchemy import text

from modelrunner.auth.secret_keys import SecretKeys
from modelrunner.settings import Settings
from modelrunner.store import migrate
from modelrunner.store.database import Database
from tests.acceptance.test_cli import cli
from tests.conftest import NEEDS_PG_TOOLS, POSTGRES_URL, TESTS, Server, wait_for_run

FIXTURES = TESTS / "fixtures" / "upgrade"
# What the earlier server's API showed of a run, besides its attempts, outputs and log.
FIELDS = ("id", "model", "model_version", "status", "params", "inputs", "cache_hit", "source_run_id", "submitted_by")
ARCHIVE = FIXTURES / f"store-1e4c549.{'postgresql' if POSTGRES_URL else 'sqlite'}.tar.gz"

pytestmark = NEEDS_PG_TOOLS


def test_a_store_of_an_earlier_release_upgrades_with_nothing_lost(server_env: dict[str, str], tmp_path: Path) -> None:
    expected = json.loads(ARCHIVE.with_suffix("").with_suffix(".expected.json").read_text())
    workspace = tmp_path / "upgrade-workspace"
    shutil.copytree(FIXTURES / "workspace", workspace)
    env = server_env | {"MODELRUNNER_WORKSPACE": str(workspace)}
    database = Database(env["MODELRUNNER_DATABASE_URL"])
    head = ScriptDirectory.from_config(migrate.alembic_config(database)).get_current_head()

    restored = cli("db", "restore", str(ARCHIVE), env=env)
    assert restored.returncode == 0, restored.stderr
    assert migrate.current_revision(database) == "0005"
    upgraded = cli("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.strip().endswith(f"is at revision {head}")

    server = Server(env, tmp_path / "upgraded-server.log")
    server.start()
    try:
        with httpx.Client(base_url=f"{server.url}/api/v1", headers=server.headers, timeout=30) as http:
            for before in expected["runs"]:
                run = http.get(f"/runs/{before['id']}").json()
                assert {key: run[key] for key in FIELDS} == {key: before[key] for key in FIELDS}
                assert [a["status"] for a in run["attempts"]] == before["attempts"]
                downloaded = {
                    o["path"]: hashlib.sha256(http.get(f"/runs/{run['id']}/outputs/{o['path']}").content).hexdigest()
                    for o in run["outputs"]
                }
                assert downloaded == before["outputs"], before["id"]
                assert http.get(f"/runs/{run['id']}/logs").text == before["log"]
            users = sorted(user["name"] for user in http.get("/users").json())
            versions = [v["version"] for v in http.get("/datasets/stations/versions").json()]
            subscriptions = http.get("/subscriptions").json()
            # The earlier version's snapshot and its dataset version still run: a new run of both.
            again = http.post("/models/copy/runs", json={"params": {"label": "after the upgrade"}}).json()
            again = wait_for_run(lambda path: http.get(path.removeprefix("/api/v1")), again["id"])
            copied = http.get(f"/runs/{again['id']}/outputs/stations.csv").text
    finally:
        server.stop()

    assert users == expected["users"]
    assert versions == expected["dataset_versions"]
    assert [{key: s[key] for key in expected["subscription"]} for s in subscriptions] == [expected["subscription"]]
    assert again["status"] == "succeeded" and again["inputs"] == expected["runs"][0]["inputs"]
    assert copied.startswith("# after the upgrade\nstation,lat,lon\nbern,")
    with database.read() as session:
        (sealed,) = session.execute(text("SELECT secret FROM subscriptions")).scalars()
    database.dispose()
    assert sealed != expected["webhook_secret"]
    keys = SecretKeys.of(Settings(data_dir=Path(env["MODELRUNNER_DATA_DIR"]), workspace=workspace))
    assert keys.decrypt(sealed) == expected["webhook_secret"]
