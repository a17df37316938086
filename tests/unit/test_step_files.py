"""Which files a pipeline step uses, and the step version made of them and its spec: refused
patterns, `check` naming a pattern that matches nothing, and which edits change which step's
version."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from modelrunner.engine.step_versions import step_versions
from modelrunner.errors import SpecError
from modelrunner.spec.model_spec import ModelSpec
from modelrunner.spec.workspace import Workspace

pytestmark = pytest.mark.store_free

MODEL = {
    "name": "pipe",
    "shared_files": ["lib/"],
    "steps": {
        "fit": {"command": ["python", "fit.py"], "files": ["priors/*.csv"], "resources": {"cpu": 1}},
        "report": {"command": ["python", "./report.py"], "files": [], "needs": ["fit"]},
        "whole": {"command": ["python", "whole.py"]},
    },
}


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "workspace"
    folder = root / "pipe"
    (folder / "lib").mkdir(parents=True)
    (folder / "priors").mkdir()
    (root / "modelrunner.yaml").write_text("{}\n")
    (folder / "model.yaml").write_text(yaml.safe_dump(MODEL))
    for name in ("fit.py", "report.py", "whole.py", "lib/common.py", "priors/a.csv", "notes.md"):
        (folder / name).write_text(f"# {name}\n")
    return root


def versions(root: Path) -> dict[str, str]:
    return {name: v.version for name, v in step_versions(Workspace(root).model("pipe")).items()}


def edit(path: Path, text: str = "# edited\n") -> None:
    path.write_text(path.read_text() + text)


def test_each_step_is_versioned_by_the_files_it_uses(workspace: Path) -> None:
    folder = workspace / "pipe"
    model = Workspace(workspace).model("pipe")
    found = step_versions(model)
    assert sorted(found["fit"].files or {}) == ["fit.py", "lib/common.py", "priors/a.csv"]
    assert sorted(found["report"].files or {}) == ["lib/common.py", "report.py"]
    assert (found["whole"].version, found["whole"].files) == (model.version, None)

    before = versions(workspace)
    edit(folder / "report.py")
    after = versions(workspace)
    assert [name for name in before if before[name] != after[name]] == ["report", "whole"]

    before = after
    edit(folder / "lib" / "common.py")
    after = versions(workspace)
    assert [name for name in before if before[name] != after[name]] == ["fit", "report", "whole"]

    before = after
    (folder / "priors" / "b.csv").write_text("new\n")
    edit(folder / "notes.md")
    after = versions(workspace)
    assert [name for name in before if before[name] != after[name]] == ["fit", "whole"]

    # Resources change no result; the command does.
    before = after
    spec = yaml.safe_load((folder / "model.yaml").read_text())
    spec["steps"]["fit"]["resources"] = {"cpu": 4, "timeout": "2h"}
    (folder / "model.yaml").write_text(yaml.safe_dump(spec))
    after = versions(workspace)
    assert [name for name in before if before[name] != after[name]] == ["whole"]
    spec["steps"]["fit"]["command"] = ["python", "fit.py", "--fast"]
    (folder / "model.yaml").write_text(yaml.safe_dump(spec))
    before, after = after, versions(workspace)
    assert [name for name in before if before[name] != after[name]] == ["fit", "whole"]


def test_a_pattern_that_matches_nothing_is_named_by_check_and_refused(workspace: Path) -> None:
    folder = workspace / "pipe"
    shutil.rmtree(folder / "priors")
    problems = [str(p) for p in Workspace(workspace).problems()]
    assert any("steps.fit.files" in p and "'priors/*.csv' matches no file of the model" in p for p in problems), (
        problems
    )
    with pytest.raises(SpecError, match=r"steps.fit.files: 'priors/\*.csv' matches no file of the model"):
        step_versions(Workspace(workspace).model("pipe"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"shared_files": ["/etc/"]}, "'/etc/' must be a relative pattern inside the model folder"),
        ({"shared_files": ["../other/"]}, "'../other/' must be a relative pattern inside the model folder"),
        (
            {"steps": {"a": {"command": ["python", "a.py"]}}},
            "shared_files: only steps with `files:` use them",
        ),
    ],
)
def test_patterns_that_cannot_work_are_refused_in_the_spec(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("*", r"\*")):
        ModelSpec.model_validate({**MODEL, **change})
