"""Profiles in modelrunner.yaml switch storage, slots, publish steps and automatic runs together."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modelrunner.errors import NotFound
from modelrunner.platform import Platform
from modelrunner.settings import Settings
from tests.conftest import TESTS, admin_client, free_port, wait_for_run
from tests.integration.runs_api import submit

PROFILES = """
profiles:
  test:
    artifacts_url: {test_artifacts}
    local_slots: 1
    publish: false
    automatic: false
    env: {{RT_CONFIG: testconfig.R}}
  production:
    artifacts_url: {production_artifacts}
    env: {{RT_CONFIG: config.R}}
"""

STEPS = "steps:\n  show: {command: [python, show.py]}"

# Writes the profile it ran under and the setting it got from it into the ledger and its outputs.
SHOW = """
import os, pathlib
line = f"{os.environ.get('MODELRUNNER_PROFILE', '-')} {os.environ.get('RT_CONFIG', '-')}"
with open(os.environ["LEDGER"], "a") as ledger:
    ledger.write(line + "\\n")
pathlib.Path(os.environ["MODELRUNNER_OUTPUTS"], "config.txt").write_text(line)
"""


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    shutil.copytree(TESTS / "pipeline_model", settings.workspace / "regional")
    for name, body in [("configured", "command: [python, show.py]"), ("configured_steps", STEPS)]:
        (settings.workspace / name).mkdir()
        (settings.workspace / name / "model.yaml").write_text(f"name: {name}\n{body}\n")
        (settings.workspace / name / "show.py").write_text(SHOW)
    workspace_file = settings.workspace / "modelrunner.yaml"
    workspace_file.write_text(
        workspace_file.read_text()
        + PROFILES.format(test_artifacts=tmp_path / "test-store", production_artifacts=tmp_path / "production-store")
    )
    return settings


def test_a_profile_sets_what_was_not_given_explicitly(settings: Settings, tmp_path: Path) -> None:
    chosen, profile = Settings(workspace=settings.workspace, profile="test").with_profile()

    assert chosen.resolved_artifacts_url == str(tmp_path / "test-store")
    assert chosen.local_slots == 1
    assert (profile.publish, profile.automatic) == (False, False)

    explicit, _ = Settings(workspace=settings.workspace, profile="test", local_slots=3).with_profile()
    assert explicit.local_slots == 3


def test_an_unknown_profile_names_the_profiles_there_are(settings: Settings) -> None:
    with pytest.raises(NotFound, match=r"unknown profile 'staging' \(profiles in modelrunner.yaml: production, test\)"):
        Settings(workspace=settings.workspace, profile="staging").with_profile()


@pytest.mark.parametrize(("profile", "published"), [("test", False), ("production", True)])
def test_publish_steps_run_only_where_the_profile_publishes(
    settings: Settings, tmp_path: Path, profile: str, published: bool
) -> None:
    platform = Platform(settings.model_copy(update={"profile": profile}))
    with admin_client(platform) as client:
        run = wait_for_run(client.get, submit(client, "regional")["id"])

    assert run["status"] == "succeeded"
    publish = next(step for step in run["steps"] if step["name"] == "publish")
    assert publish["status"] == ("succeeded" if published else "skipped")
    assert any(o["path"].startswith("publish/") for o in run["outputs"]) == published
    # The outputs went to the profile's store.
    assert list((tmp_path / f"{profile}-store").rglob("summary.json"))


def test_serve_refuses_an_unknown_profile_with_a_message(settings: Settings, server_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelrunner", "serve", "--profile", "staging", "--port", str(free_port())],
        env=server_env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "unknown profile 'staging'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("model", ["configured", "configured_steps"])
def test_each_profile_computes_its_own_results_and_its_models_see_its_settings(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str
) -> None:
    ledger = tmp_path / "ledger.txt"
    monkeypatch.setenv("LEDGER", str(ledger))
    settings = settings.model_copy(update={"artifacts_url": str(tmp_path / "one-store")})
    # The model reads LEDGER from the server's environment, as the workspace allows it.
    workspace_file = settings.workspace / "modelrunner.yaml"
    workspace_file.write_text(workspace_file.read_text() + "model_environment: [LEDGER]\n")
    answers = []
    for profile in [None, "test", "production", "test", None]:
        platform = Platform(settings.model_copy(update={"profile": profile}))
        with admin_client(platform) as client:
            submitted = submit(client, model)
            run = wait_for_run(client.get, submitted["id"])
            assert run["status"] == "succeeded", run["error"]
            config = client.get(f"/api/v1/runs/{run['id']}/outputs/{run['outputs'][0]['path']}")
            answers.append((submitted["submission"], config.text))

    # One store: each profile computed once and saw its own settings; the same one again is a hit.
    assert ledger.read_text().splitlines() == ["- -", "test testconfig.R", "production config.R"]
    assert answers == [
        ("created", "- -"),
        ("created", "test testconfig.R"),
        ("created", "production config.R"),
        ("cache_hit", "test testconfig.R"),
        ("cache_hit", "- -"),
    ]
