"""Accounts as an administrator and a user meet them: ``modelrunner users|groups|tokens`` as real
subprocesses on a fresh workspace and store, tokens used against a real ``modelrunner serve``,
and what the store keeps (digests and argon2 hashes, never a token or a password)."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from modelrunner.store.database import Database
from tests.acceptance.test_cli import cli, ok
from tests.conftest import Server, free_port

BOOTSTRAP = "created the first site admin 'admin'"
NEEDS_TOKEN = "set MODELRUNNER_TOKEN to an API token"
CREATE_TOKEN = "`modelrunner tokens create --user NAME`"


def with_token(env: dict[str, str], token: str | None) -> dict[str, str]:
    """``env`` with MODELRUNNER_TOKEN set to ``token`` (removed with None)."""
    changed = {key: value for key, value in env.items() if key != "MODELRUNNER_TOKEN"}
    return changed if token is None else {**changed, "MODELRUNNER_TOKEN": token}


def create_token(env: dict[str, str], user: str, *extra: str) -> str:
    """``modelrunner tokens create --quiet``: its whole stdout is the token."""
    printed = ok("tokens", "create", "--user", user, "--quiet", *extra, env=env)
    assert re.fullmatch(r"mrt_\d+_[A-Za-z0-9_-]{43}\n", printed), printed
    return printed.strip()


def started(server_env: dict[str, str], log: Path, token: str | None = None) -> Server:
    """A started ``modelrunner serve``; ``env`` carries ``token`` (or a new token of admin)."""
    server = Server(with_token(server_env, token), log)
    server.env["MODELRUNNER_SERVER"] = server.url
    server.start()
    return server


def me(server: Server, token: str) -> httpx.Response:
    return httpx.get(f"{server.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"})


def refused(args: list[str], env: dict[str, str]) -> str:
    """Run a command that must fail with a message (exit 1, no traceback); its stderr."""
    result = cli(*args, env=env)
    assert result.returncode == 1, f"{args} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert result.stderr.startswith("error: "), result.stderr
    return result.stderr


def rows(env: dict[str, str], table: str) -> list[dict[str, Any]]:
    """Every row of a table of the store the environment names, as the database holds it."""
    database = Database(env["MODELRUNNER_DATABASE_URL"])
    try:
        with database.read() as session:
            return [dict(row._mapping) for row in session.execute(text(f'SELECT * FROM "{table}" ORDER BY 1, 2'))]
    finally:
        database.dispose()


def accounts_snapshot(env: dict[str, str]) -> list[list[dict[str, Any]]]:
    """What the store holds about accounts, row by row."""
    return [rows(env, table) for table in ("users", "groups", "group_members", "api_tokens")]


def test_serve_prints_how_to_get_the_first_admins_token_once(server_env: dict[str, str], tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    server = Server(with_token(server_env, None), log)
    server.env["MODELRUNNER_TOKEN"] = "unused"  # the fixture would create a token of its own
    server.start()
    server.stop()
    server.start()
    server.stop()

    printed = log.read_text()
    assert printed.count(BOOTSTRAP) == 1, printed
    [line] = [line for line in printed.splitlines() if BOOTSTRAP in line]
    command = line.split("Create its token with: ", 1)[1]
    assert "--workspace " + shlex.quote(server_env["MODELRUNNER_WORKSPACE"]) in command
    assert "mrt_" not in printed  # serve never prints a token

    # The command works as printed, from another folder, with no MODELRUNNER_* variables.
    bare = {key: value for key, value in server_env.items() if not key.startswith("MODELRUNNER_")}
    words = shlex.split(command)
    assert words[:5] == ["modelrunner", "tokens", "create", "--user", "admin"]
    result = cli(*words[1:], "--quiet", env=bare, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    server = started(server_env, log, token)
    try:
        assert me(server, token).json() == {"name": "admin", "groups": [], "is_admin": True}
    finally:
        server.stop()
    assert log.read_text().count(BOOTSTRAP) == 1


def test_a_token_created_before_the_first_serve_signs_the_cli_in(server_env: dict[str, str], tmp_path: Path) -> None:
    env = with_token(server_env, None)
    created = ok("tokens", "create", "--user", "admin", "--label", "laptop", env=env)
    assert "cannot be shown again" in created
    assert "MODELRUNNER_TOKEN" in created
    token = create_token(env, "admin")

    server = started(server_env, tmp_path / "server.log", token)
    try:
        listed = ok("models", "list", env=server.env)
        assert "noop" in listed and "sleeper" in listed

        anonymous = refused(["models", "list"], with_token(server.env, None))
        assert NEEDS_TOKEN in anonymous and CREATE_TOKEN in anonymous

        ok("users", "add", "bob", env=env)
        bob = create_token(env, "bob")
        forbidden = refused(["models", "show", "noop"], with_token(server.env, bob))
        assert "viewing a model needs 'view' on model 'noop'; bob has no access to it" in forbidden
        assert "MODELRUNNER_TOKEN" not in forbidden  # a 403 is about permissions, not the token
    finally:
        server.stop()
    assert BOOTSTRAP not in (tmp_path / "server.log").read_text()  # the CLI created the admin before


def test_expired_revoked_and_disabled_users_tokens_are_refused(server_env: dict[str, str], tmp_path: Path) -> None:
    env = with_token(server_env, None)
    ok("users", "add", "carol", env=env)
    short_lived = create_token(env, "admin", "--expires", "1s")
    revoked = create_token(env, "admin")
    carols = create_token(env, "carol")
    server = started(server_env, tmp_path / "server.log")
    try:
        assert me(server, carols).status_code == 200
        assert me(server, revoked).status_code == 200
        time.sleep(1.2)
        revoked_id = revoked.split("_")[1]
        assert f"revoked token {revoked_id} of user 'admin'" in ok("tokens", "revoke", revoked_id, env=env)
        assert "disabled user 'carol'" in ok("users", "disable", "carol", env=env)

        for token, says in [
            (short_lived, f"token {short_lived.split('_')[1]} expired at"),
            (revoked, f"token {revoked_id} was revoked"),
            (carols, "user 'carol' is disabled"),
        ]:
            message = refused(["models", "list"], with_token(server.env, token))
            assert says in message
            assert "the server refused the token in MODELRUNNER_TOKEN" in message and CREATE_TOKEN in message
            answer = me(server, token)
            assert answer.status_code == 401 and says in answer.json()["detail"]

        states = {t["id"]: t["state"] for t in json.loads(ok("tokens", "list", "--json", env=env))}
        assert states[int(short_lived.split("_")[1])] == "expired"
        assert states[int(revoked_id)] == "revoked"
        assert "was revoked already" in ok("tokens", "revoke", revoked_id, env=env)
        ok("users", "enable", "carol", env=env)
        assert me(server, carols).status_code == 200  # enabled again, her token works again
    finally:
        server.stop()


def test_the_store_keeps_only_digests_and_argon2_hashes(server_env: dict[str, str]) -> None:
    env = with_token(server_env, None)
    added = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelrunner",
            "users",
            "add",
            "dora",
            "--email",
            "dora@example.org",
            "--password-stdin",
        ],
        env=env,
        input="hunter2!\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    assert "added user 'dora'" in added.stdout
    tokens = [create_token(env, "dora", "--label", "ci"), create_token(env, "admin")]

    stored_tokens = rows(env, "api_tokens")
    stored_users = rows(env, "users")
    everything = repr(stored_tokens) + repr(stored_users)
    for token in tokens:
        secret = token.split("_", 2)[2]
        assert token not in everything and secret not in everything
        [row] = [row for row in stored_tokens if row["id"] == int(token.split("_")[1])]
        assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    [dora] = [row for row in stored_users if row["name"] == "dora"]
    assert dora["password_hash"].startswith("$argon2id$")
    assert "hunter2" not in everything
    listed = ok("tokens", "list", "--json", env=env) + ok("users", "list", "--json", env=env)
    assert all(row["secret_hash"] not in listed for row in stored_tokens)
    assert '"has_password": true' in listed


def piped(args: list[str], env: dict[str, str], stdin: str) -> subprocess.CompletedProcess[str]:
    """Run ``modelrunner ARGS`` with ``stdin`` as its standard input (no traceback, ever)."""
    result = subprocess.run(
        [sys.executable, "-m", "modelrunner", *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result


def password_hash(env: dict[str, str], name: str) -> str | None:
    [user] = [row for row in rows(env, "users") if row["name"] == name]
    hashed: str | None = user["password_hash"]
    return hashed


def signs_in(env: dict[str, str], name: str, password: str) -> bool:
    from modelrunner.auth import accounts
    from modelrunner.errors import Unauthenticated

    database = Database(env["MODELRUNNER_DATABASE_URL"])
    try:
        with database.read() as session:
            accounts.sign_in(session, name, password)
        return True
    except Unauthenticated:
        return False
    finally:
        database.dispose()


def test_set_password_gives_a_user_a_new_password(server_env: dict[str, str]) -> None:
    env = with_token(server_env, None)
    ok("users", "add", "erin", env=env)
    erins_token = create_token(env, "erin")
    assert password_hash(env, "erin") is None

    first = piped(["users", "set-password", "erin", "--password-stdin"], env, "first secret\n")
    assert first.returncode == 0, first.stderr
    assert "set the password of user 'erin'" in first.stdout
    hashed = password_hash(env, "erin")
    assert hashed is not None and hashed.startswith("$argon2id$")
    assert signs_in(env, "erin", "first secret")

    second = piped(["users", "set-password", "erin", "--password-stdin"], env, "second secret\n")
    assert second.returncode == 0, second.stderr
    rehashed = password_hash(env, "erin")
    assert rehashed is not None and rehashed.startswith("$argon2id$") and rehashed != hashed
    assert signs_in(env, "erin", "second secret") and not signs_in(env, "erin", "first secret")
    assert "secret" not in repr(rows(env, "users"))
    [listed] = [user for user in json.loads(ok("users", "list", "--json", env=env)) if user["name"] == "erin"]
    assert listed["has_password"] is True
    tokens = json.loads(ok("tokens", "list", "--user", "erin", "--json", env=env))
    assert [token["state"] for token in tokens] == ["active"]  # her token was left alone
    assert erins_token.startswith("mrt_")

    before = accounts_snapshot(env)
    for args, stdin, says in [
        (["users", "set-password", "nobody", "--password-stdin"], "whatever\n", "unknown user 'nobody'"),
        (["users", "set-password", "erin", "--password-stdin"], "\n", "read an empty password"),
        (["users", "set-password", "erin"], "piped\n", "pipe it in with --password-stdin"),
    ]:
        result = piped(args, env, stdin)
        assert result.returncode == 1, f"{args} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        assert result.stderr.startswith("error: ") and says in result.stderr, result.stderr
    assert accounts_snapshot(env) == before
    assert "--password-stdin" in ok("users", "set-password", "--help", env=env)


def test_mistakes_are_messages_that_change_nothing(server_env: dict[str, str], tmp_path: Path) -> None:
    env = with_token(server_env, None)
    ok("groups", "add", "team", env=env)
    ok("users", "add", "alice", "--group", "team", "--admin", env=env)
    create_token(env, "alice")
    users = ok("users", "list", env=env)
    assert re.search(r"alice .* yes .* no .* team .* 1 ", users), users
    assert re.search(r"team .* alice ", ok("groups", "list", env=env))
    before = accounts_snapshot(env)

    for args, says in [
        (["users", "add", "alice"], "a user called 'alice' exists already"),
        (["groups", "add", "team"], "a group called 'team' exists already"),
        (["users", "add", "carol", "--group", "team", "--group", "nosuch"], "unknown group 'nosuch'"),
        (["users", "add", "Carol Smith"], "user name 'Carol Smith': use lowercase letters"),
        (["users", "add", "carol", "--email", "not-an-address"], "'not-an-address' is not an e-mail address"),
        (["groups", "add-member", "team", "nobody"], "unknown user 'nobody'"),
        (["groups", "remove-member", "nosuch", "alice"], "unknown group 'nosuch'"),
        (["users", "disable", "nobody"], "unknown user 'nobody'"),
        (["tokens", "create", "--user", "nobody"], "unknown user 'nobody'"),
        (["tokens", "list", "--user", "nobody"], "unknown user 'nobody'"),
        (["tokens", "revoke", "999"], "unknown token 999"),
    ]:
        assert says in refused(args, env), args

    assert accounts_snapshot(env) == before
    usage = cli("tokens", "create", "--user", "alice", "--expires", "soon", env=env)
    assert usage.returncode == 2 and "'soon'" in usage.stderr and "--expires" in usage.stderr
    assert accounts_snapshot(env) == before


def test_the_store_must_be_found_and_reachable(server_env: dict[str, str], tmp_path: Path) -> None:
    bare = {key: value for key, value in server_env.items() if not key.startswith("MODELRUNNER_")}
    not_a_workspace = refused(["users", "list", "--workspace", str(tmp_path)], bare)
    assert f"{tmp_path} is not a workspace" in not_a_workspace
    assert not (tmp_path / ".modelrunner").exists()  # no stray store was created

    url = f"postgresql://someone:sekrit@127.0.0.1:{free_port()}/nowhere"
    unreachable = refused(["tokens", "create", "--user", "admin", "--database-url", url], bare)
    assert "cannot use the database postgresql://someone:***@127.0.0.1" in unreachable
    assert "sekrit" not in unreachable


def test_the_account_commands_are_described(server_env: dict[str, str]) -> None:
    env = {key: value for key, value in server_env.items() if not key.startswith("MODELRUNNER_")}
    top = ok("--help", env=env)
    for command in ("users", "groups", "tokens"):
        assert command in top
    create = ok("tokens", "create", "--help", env=env)
    for option in ("--user", "--expires", "--label", "--quiet", "MODELRUNNER_EXPIRES", "--database-url"):
        assert option in create
    assert "--password-stdin" in ok("users", "add", "--help", env=env)
    assert "add-member" in ok("groups", "--help", env=env)
