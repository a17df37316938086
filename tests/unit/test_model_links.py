"""Model folders with symbolic links: a link inside the workspace is followed (the version and the
snapshot hold the file it points to, so a link and a copy are the same version with the same
content); a link that leaves the workspace, points to nothing or loops is refused by `check`
(Workspace.problems) and when the model is looked up, naming the link and why."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from modelrunner.errors import SpecError
from modelrunner.spec.model_version import LinkRefused, content_hash, copy_model, model_files, snapshot, unpack
from modelrunner.spec.workspace import Workspace

pytestmark = pytest.mark.store_free


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "workspace"
    (root / "shared" / "rlib").mkdir(parents=True)
    (root / "modelrunner.yaml").write_text("{}\n")
    (root / "shared" / "common.R").write_text("helper <- function() 42\n")
    (root / "shared" / "rlib" / "fit.R").write_text("fit <- function() 1\n")
    model = root / "linked"
    model.mkdir()
    (model / "model.yaml").write_text("name: linked\ncommand: [python, run.py]\n")
    (model / "run.py").write_text("print(open('common.R').read())\n")
    os.symlink("../shared/common.R", model / "common.R")
    os.symlink("../shared/rlib", model / "rlib")
    return root


def test_links_inside_the_workspace_are_followed_and_snapshotted_as_files(workspace: Path, tmp_path: Path) -> None:
    model = workspace / "linked"
    assert [p.as_posix() for p in model_files(model)] == ["common.R", "model.yaml", "rlib/fit.R", "run.py"]

    unpacked = tmp_path / "unpacked"
    unpack(snapshot(model), unpacked)
    assert not (unpacked / "common.R").is_symlink() and not (unpacked / "rlib").is_symlink()
    assert (unpacked / "common.R").read_text() == "helper <- function() 42\n"
    assert (unpacked / "rlib" / "fit.R").read_text() == "fit <- function() 1\n"
    copied = tmp_path / "copied"
    copy_model(model, copied)
    assert (copied / "rlib" / "fit.R").read_text() == "fit <- function() 1\n" and not (copied / "common.R").is_symlink()

    # Replaced by copies of the same content: the same version, whose snapshot holds the same files.
    linked_version = content_hash(model)
    (model / "common.R").unlink()
    (model / "rlib").unlink()
    shutil.copy(workspace / "shared" / "common.R", model / "common.R")
    shutil.copytree(workspace / "shared" / "rlib", model / "rlib")
    assert content_hash(model) == linked_version
    again = tmp_path / "again"
    unpack(snapshot(model), again)
    assert sorted(p.relative_to(again).as_posix() for p in again.rglob("*") if p.is_file()) == [
        "common.R",
        "model.yaml",
        "rlib/fit.R",
        "run.py",
    ]

    # The version follows the file a link points to.
    (model / "common.R").unlink()
    os.symlink("../shared/common.R", model / "common.R")
    (workspace / "shared" / "common.R").write_text("helper <- function() 43\n")
    assert content_hash(model) != linked_version


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("outside", "common.R links to {outside}, outside the workspace"),
        ("nothing", "common.R links to {nothing}, which does not exist"),
    ],
)
def test_a_link_that_leaves_the_workspace_or_points_to_nothing_is_refused(
    workspace: Path, tmp_path: Path, target: str, reason: str
) -> None:
    outside = tmp_path / "secrets.R"
    outside.write_text("token <- 'x'\n")
    paths = {"outside": str(outside), "nothing": str(workspace / "shared" / "gone.R")}
    model = workspace / "linked"
    (model / "common.R").unlink()
    os.symlink(paths[target], model / "common.R")
    expected = reason.format(outside=paths["outside"], nothing=paths["nothing"])

    with pytest.raises(LinkRefused, match="^" + re.escape(expected)):
        snapshot(model)
    found = [str(p) for p in Workspace(workspace).problems()]
    assert any(p.startswith("linked/model.yaml") and expected in p for p in found), found
    with pytest.raises(SpecError, match="model 'linked' has a broken spec: .*" + re.escape(expected)):
        Workspace(workspace).model("linked")


def test_a_link_to_a_folder_that_holds_it_is_refused(workspace: Path) -> None:
    model = workspace / "linked"
    os.symlink("..", model / "rlib" / "up")  # rlib is shared/rlib: up is shared, which holds rlib
    with pytest.raises(LinkRefused, match=re.escape("rlib/up links to .., a folder that holds it")):
        model_files(model)
    (workspace / "shared" / "rlib" / "up").unlink()
    os.symlink(".", model / "self")
    with pytest.raises(LinkRefused, match=re.escape("self links to ., a folder that holds it")):
        model_files(model)


def test_a_model_outside_any_workspace_may_link_only_inside_itself(tmp_path: Path) -> None:
    model = tmp_path / "alone"
    model.mkdir()
    (model / "data.csv").write_text("a\n1\n")
    os.symlink("data.csv", model / "same.csv")
    assert [p.as_posix() for p in model_files(model)] == ["data.csv", "same.csv"]
    (tmp_path / "next.csv").write_text("b\n")
    os.symlink("../next.csv", model / "next.csv")
    with pytest.raises(LinkRefused, match="outside the workspace"):
        model_files(model)
