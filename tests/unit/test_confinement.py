"""What a model gets of its runner: its user, its environment, settings and secrets from files."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modelrunner.auth.secrets import named_secret
from modelrunner.errors import ModelrunnerError, SpecError
from modelrunner.execution.confinement import DEFAULT_MODEL_USER, ModelUser, model_environment, model_user
from modelrunner.settings import Settings
from modelrunner.spec.workspace import Workspace

RUNNER = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "LC_TIME": "en_GB.UTF-8",
    "MODELRUNNER_DATABASE_URL": "postgresql://u:pw@db/x",
    "MODELRUNNER_SESSION_SECRET": "s3cret",
    "SMTP_PASSWORD": "hunter2",
    "AWS_SECRET_ACCESS_KEY": "key",
    "HTTPS_PROXY": "http://proxy:3128",
    "LD_PRELOAD": "/tmp/evil.so",
}
CONTRACT = {"MODELRUNNER_RUN_ID": "7", "PATH": "/contract/wins"}


def test_a_model_gets_the_allow_list_the_passed_names_and_the_contract_only() -> None:
    env = model_environment(RUNNER, ["HTTPS_PROXY", "MODELRUNNER_SESSION_SECRET"], None, CONTRACT)
    assert env == {
        "PATH": "/contract/wins",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "LC_TIME": "en_GB.UTF-8",
        "HTTPS_PROXY": "http://proxy:3128",
        "MODELRUNNER_RUN_ID": "7",
    }


def test_a_model_of_another_user_gets_that_users_home() -> None:
    user = ModelUser("models", 1234, 1234, "/home/models")
    env = model_environment(RUNNER, [], user, {})
    assert (env["HOME"], env["USER"], env["LOGNAME"]) == ("/home/models", "models", "models")


def test_an_unknown_run_as_user_is_named() -> None:
    with pytest.raises(ModelrunnerError, match="there is no user 'no-such-user-x9' on this machine"):
        model_user("no-such-user-x9", allow_root=True)


def test_a_root_server_runs_models_as_the_user_it_is_given_and_refuses_root_when_told() -> None:
    if os.geteuid() != 0:
        with pytest.raises(ModelrunnerError, match="only a server running as root can run models as 'nobody'"):
            model_user("nobody", allow_root=True)
        return
    nobody = pwd.getpwnam("nobody")
    assert model_user("nobody", allow_root=False) == ModelUser("nobody", nobody.pw_uid, nobody.pw_gid, nobody.pw_dir)
    assert model_user("root", allow_root=True) is None  # its own user: nothing to switch
    with pytest.raises(ModelrunnerError, match="models would run as root, which `allow_root: false` forbids"):
        model_user("root", allow_root=False)
    try:
        pwd.getpwnam(DEFAULT_MODEL_USER)
    except KeyError:
        assert model_user(None, allow_root=True) is None
        with pytest.raises(ModelrunnerError, match=f"create the user '{DEFAULT_MODEL_USER}'"):
            model_user(None, allow_root=False)


def test_the_runner_protects_itself_from_its_models() -> None:
    probe = (
        "import ctypes, os\n"
        "from modelrunner.execution.confinement import protect_runner\n"
        "protect_runner()\n"
        "print(ctypes.CDLL(None).prctl(3), oct(os.umask(0)))\n"  # PR_GET_DUMPABLE
    )
    answer = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert answer.split() == ["0", "0o77"]


def test_every_setting_can_come_from_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "session-secret"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("MODELRUNNER_SESSION_SECRET_FILE", str(secret))
    monkeypatch.setenv("MODELRUNNER_DATABASE_URL_FILE", str(tmp_path / "missing"))
    with pytest.raises(ModelrunnerError, match=r"MODELRUNNER_DATABASE_URL_FILE: cannot read .*missing"):
        Settings()
    monkeypatch.delenv("MODELRUNNER_DATABASE_URL_FILE")
    settings = Settings()
    assert settings.session_secret is not None and settings.session_secret.get_secret_value() == "from-a-file"
    # A variable wins over a file.
    monkeypatch.setenv("MODELRUNNER_SESSION_SECRET", "from-a-variable")
    assert Settings().session_secret.get_secret_value() == "from-a-variable"  # type: ignore[union-attr]


def test_a_named_secret_comes_from_its_variable_or_its_file(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("k3y\n")
    assert named_secret("KEY", {"KEY": "direct", "KEY_FILE": str(tmp_path / "key")}) == "direct"
    assert named_secret("KEY", {"KEY_FILE": str(tmp_path / "key")}) == "k3y"
    assert named_secret("KEY", {}) is None
    with pytest.raises(ModelrunnerError, match="KEY_FILE: cannot read"):
        named_secret("KEY", {"KEY_FILE": str(tmp_path / "nope")})


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["MODELRUNNER_DATABASE_URL"], "the server's own settings (MODELRUNNER_*) never reach a model"),
        (["SMTP_PASSWORD"], "SMTP_PASSWORD holds a secret of the server's"),
        (["SMTP_PASSWORD_FILE"], "SMTP_PASSWORD_FILE holds a secret of the server's"),
        (["not a name"], "'not a name' is not the name of an environment variable"),
    ],
)
def test_the_workspace_cannot_pass_a_secret_to_its_models(tmp_path: Path, names: list[str], message: str) -> None:
    spec = {
        "model_environment": names,
        "notifications": {
            "email": {"host": "smtp", "sender": "a@b.org", "username": "u", "password_env": "SMTP_PASSWORD"}
        },
    }
    (tmp_path / "modelrunner.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(SpecError) as raised:
        Workspace(tmp_path).spec()
    assert message in raised.value.message
