"""A test workspace with datasets: tests/workspace plus a ``cases`` dataset (a local git repository
built by the test) and a model, ``counter``, that reads it.

A test module uses it by importing the fixtures, which replace conftest's ``workspace`` (so
``settings``, ``platform``, ``client`` and ``server`` run on it)::

    from tests.data_fixtures import git_repo  # noqa: F401
    from tests.dataset_workspace import workspace  # noqa: F401

The repository starts empty: commit to ``git_repo`` (files under ``data/``), then sync.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import TESTS
from tests.data_fixtures import GitRepo

COUNTER_SPEC = {
    "name": "counter",
    "title": "Counts case rows",
    "command": ["python", "count.py"],
    "params": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "n": {"type": "integer", "default": 0},
            "sleep": {"type": "number", "minimum": 0, "default": 0},
        },
    },
    "inputs": {"cases": "cases"},
    "outputs": [{"path": "count.json"}],
}
COUNTER_CODE = """\
import json, os, pathlib, time

params = json.loads(pathlib.Path(os.environ["MODELRUNNER_PARAMS"]).read_text())
if params["sleep"]:
    print("::progress:: 0.1 sleeping", flush=True)
    time.sleep(params["sleep"])
rows = (pathlib.Path(os.environ["MODELRUNNER_INPUTS"]) / "cases" / "data" / "cases.csv").read_text().splitlines()
result = {"rows": len(rows), "n": params["n"]}
(pathlib.Path(os.environ["MODELRUNNER_OUTPUTS"]) / "count.json").write_text(json.dumps(result))
"""


def build_workspace(destination: Path, datasets: Mapping[str, Mapping[str, Any]]) -> Path:
    """tests/workspace (minus the broken model) with ``datasets`` declared and the ``counter`` model."""
    shutil.copytree(TESTS / "workspace", destination, ignore=shutil.ignore_patterns("__pycache__", "broken"))
    spec = {"name": "dataset-workspace", "datasets": {name: dict(d) for name, d in datasets.items()}}
    (destination / "modelrunner.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    model = destination / "counter"
    model.mkdir()
    (model / "model.yaml").write_text(yaml.safe_dump(COUNTER_SPEC, sort_keys=False))
    (model / "count.py").write_text(COUNTER_CODE)
    return destination


def git_dataset(repo: GitRepo) -> dict[str, Any]:
    return {"source": "git", "repo": str(repo.path), "branch": repo.branch, "paths": ["data"], "description": "Cases"}


@pytest.fixture
def workspace(tmp_path: Path, git_repo: GitRepo) -> Path:
    """The dataset workspace, its ``cases`` dataset reading ``git_repo``."""
    return build_workspace(tmp_path / "workspace", {"cases": git_dataset(git_repo)})


def commit_with_prefix(repo: GitRepo, files: Mapping[str, str], prefix: str, when: dt.datetime) -> str:
    """Commit ``files`` on top of the branch as a commit whose sha starts with ``prefix`` (a few hex
    characters): the message carries a counter tried until the hash fits. The sha."""
    for relative, content in files.items():
        (repo.path / relative).parent.mkdir(parents=True, exist_ok=True)
        (repo.path / relative).write_text(content)
    repo.git("add", "--all")
    tree = repo.git("write-tree").strip()
    parent = repo.head()
    stamp = f"{int(when.timestamp())} +0000"
    head = (
        f"tree {tree}\nparent {parent}\n"
        f"author Test Author <author@example.org> {stamp}\n"
        f"committer Test Committer <committer@example.org> {stamp}\n\n"
    )
    for attempt in range(1 << 24):
        body = f"{head}data, take {attempt}\n".encode()
        sha = hashlib.sha1(b"commit %d\0" % len(body) + body).hexdigest()
        if sha.startswith(prefix):
            break
    else:  # pragma: no cover - 16 million tries always find a four-character prefix
        raise AssertionError(f"no commit with prefix {prefix}")
    crafted = repo.path / ".git" / "crafted-commit"  # inside .git: never part of a later commit
    crafted.write_bytes(body)
    written = repo.git("hash-object", "-t", "commit", "-w", str(crafted)).strip()
    assert written == sha
    repo.git("update-ref", f"refs/heads/{repo.branch}", sha)
    return sha
