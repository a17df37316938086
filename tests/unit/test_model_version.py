"""The model version is a hash of the model's content; its snapshot restores that content."""

from __future__ import annotations

import io
import os
import re
import shutil
import tarfile
from pathlib import Path

import pytest

from modelrunner.spec.model_version import content_hash, model_files, snapshot, unpack


@pytest.fixture
def model(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    (folder / "lib").mkdir(parents=True)
    (folder / "model.yaml").write_text("name: model\ncommand: [sh, run.sh]\n")
    (folder / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (folder / "run.sh").chmod(0o755)
    (folder / "lib" / "fit.py").write_text("def fit():\n    return 1\n")
    (folder / "data.bin").write_bytes(bytes(range(256)))
    return folder


def add_byproducts(folder: Path) -> None:
    for name in ("__pycache__", ".git", ".ipynb_checkpoints", ".venv", "node_modules", ".modelrunner"):
        (folder / "lib" / name).mkdir()
        (folder / "lib" / name / "junk").write_text(name)
    (folder / "lib" / "fit.pyc").write_bytes(b"\x00")
    (folder / "model.yaml~").write_text("backup")
    (folder / ".run.sh.swp").write_text("swap")


def test_hash_is_16_hex_digits(model: Path) -> None:
    assert re.fullmatch(r"[0-9a-f]{16}", content_hash(model))


def test_hash_is_the_same_for_a_copy(model: Path, tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(model, copy)  # other folder, other modification times

    assert content_hash(copy) == content_hash(model)


def test_hash_changes_with_a_files_content(model: Path) -> None:
    before = content_hash(model)

    (model / "lib" / "fit.py").write_text("def fit():\n    return 2\n")

    assert content_hash(model) != before


def test_hash_changes_with_a_new_file(model: Path) -> None:
    before = content_hash(model)

    (model / "lib" / "new.py").write_text("")

    assert content_hash(model) != before


def test_hash_changes_when_a_file_moves(model: Path) -> None:
    before = content_hash(model)

    (model / "lib" / "fit.py").rename(model / "fit.py")

    assert content_hash(model) != before


def test_hash_changes_with_the_executable_bit(model: Path) -> None:
    before = content_hash(model)

    (model / "run.sh").chmod(0o644)

    assert content_hash(model) != before


def test_hash_changes_with_content_moved_between_files(model: Path) -> None:
    (model / "a").write_text("xy")
    (model / "b").write_text("")
    before = content_hash(model)

    (model / "a").write_text("x")
    (model / "b").write_text("y")

    assert content_hash(model) != before


def test_hash_ignores_caches_and_editor_files(model: Path) -> None:
    before = content_hash(model)

    add_byproducts(model)

    assert content_hash(model) == before


def test_model_files_are_sorted_and_relative(model: Path) -> None:
    add_byproducts(model)

    assert model_files(model) == [Path("data.bin"), Path("lib/fit.py"), Path("model.yaml"), Path("run.sh")]


def test_snapshot_round_trip(model: Path, tmp_path: Path) -> None:
    add_byproducts(model)
    restored = tmp_path / "restored"

    unpack(snapshot(model), restored)

    assert model_files(restored) == model_files(model)
    for relative in model_files(model):
        assert (restored / relative).read_bytes() == (model / relative).read_bytes()
    assert os.access(restored / "run.sh", os.X_OK)
    assert not (restored / "lib" / "__pycache__").exists()
    assert not (restored / "model.yaml~").exists()
    assert content_hash(restored) == content_hash(model)


def test_unpack_refuses_paths_outside_the_destination(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = b"owned"
        member = tarfile.TarInfo("../escaped.txt")
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))

    with pytest.raises(tarfile.TarError):
        unpack(buffer.getvalue(), tmp_path / "destination")
    assert not (tmp_path / "escaped.txt").exists()
