"""What belongs to a model: ``.modelrunnerignore`` leaves files out of its version, its snapshot and
the copy an attempt runs in, and ``check`` names a program the copy would leave out."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path, PurePosixPath

import pytest

from modelrunner.spec.environment_spec import environment_problem
from modelrunner.spec.model_spec import ModelSpec, program_problems
from modelrunner.spec.model_version import content_hash, copy_model, left_out, model_files, snapshot

pytestmark = pytest.mark.store_free


@pytest.fixture
def model(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    (folder / "runs" / "old").mkdir(parents=True)
    (folder / "model.yaml").write_text("name: model\ncommand: [python, model.py]\n")
    (folder / "model.py").write_text("print('hi')\n")
    (folder / "requirements.txt").write_text("pyjokes==0.8.3\n")
    (folder / "big.csv").write_text("a,b\n1,2\n")
    (folder / "runs" / "old" / "result.txt").write_text("an old result\n")
    return folder


def test_an_ignore_file_leaves_its_files_out_of_the_version_snapshot_and_copy(model: Path, tmp_path: Path) -> None:
    before = content_hash(model)
    (model / ".modelrunnerignore").write_text("# local runs and data\nruns/\n*.csv\n!keep.csv\n")
    (model / "keep.csv").write_text("x\n")
    listed = {p.as_posix() for p in model_files(model)}

    assert listed == {".modelrunnerignore", "keep.csv", "model.py", "model.yaml", "requirements.txt"}
    ignoring = content_hash(model)
    assert ignoring != before  # the ignore file is part of the model
    (model / "big.csv").write_text("changed\n")
    (model / "runs" / "new.txt").write_text("new\n")
    assert content_hash(model) == ignoring  # what it leaves out does not change the version
    with tarfile.open(fileobj=io.BytesIO(snapshot(model)), mode="r:gz") as archive:
        assert sorted(archive.getnames()) == sorted(listed)
    copy = tmp_path / "copy"
    copy_model(model, copy)
    assert not (copy / "runs").exists() and not (copy / "big.csv").exists()
    assert (copy / "keep.csv").read_text() == "x\n"


def test_a_changed_environment_file_is_a_new_version(model: Path) -> None:
    before = content_hash(model)
    (model / "requirements.txt").write_text("pyjokes==0.8.2\n")
    assert content_hash(model) != before


def test_left_out_names_why(model: Path) -> None:
    (model / ".venv" / "bin").mkdir(parents=True)
    (model / ".venv" / "bin" / "python").write_text("")
    (model / ".modelrunnerignore").write_text("*.csv\n")

    assert left_out(model, PurePosixPath("./.venv/bin/python")) == "the folder copy leaves .venv out"
    assert left_out(model, PurePosixPath("big.csv")) == ".modelrunnerignore leaves it out"
    assert left_out(model, PurePosixPath("model.py")) is None


def test_check_refuses_a_program_in_the_models_own_venv(model: Path) -> None:
    # The team's model: its own venv, started by path; the copy leaves .venv out.
    os.symlink("/usr/bin/env", model / "python-link")
    (model / ".venv" / "bin").mkdir(parents=True)
    os.symlink("/usr/bin/env", model / ".venv" / "bin" / "python")
    spec = ModelSpec(name="model", command=["./.venv/bin/python", "model.py"])

    [problem] = program_problems(spec, model, "model/model.yaml")

    assert problem.field == "command"
    assert "'./.venv/bin/python' is not part of the model: the folder copy leaves .venv out" in problem.message
    assert "use `environment: requirements.txt`" in problem.message
    assert program_problems(ModelSpec(name="model", command=["./python-link"]), model, "m") == []


def test_check_names_an_environment_that_cannot_be_built_here(model: Path) -> None:
    (model / "environment.yml").write_text("dependencies: [python=3.11]\n")
    (model / ".modelrunnerignore").write_text("ignored.txt\n")
    (model / "ignored.txt").write_text("x\n")
    (model / "setup.cfg").write_text("")

    assert environment_problem("requirements.txt", model) is None
    assert environment_problem("missing.txt", model) == "'missing.txt' does not exist in the model folder"
    assert "is not an environment file modelrunner builds" in str(environment_problem("setup.cfg", model))
    assert (
        environment_problem("ignored.txt", model)
        == "'ignored.txt' is not part of the model: .modelrunnerignore leaves it out"
    )
    conda = environment_problem("environment.yml", model, path=str(model / "no-tools-here"))
    assert conda == (
        "environment.yml is a conda environment, and none of micromamba, mamba, conda is installed on this machine"
    )
    spec = ModelSpec(name="model", command=["python", "model.py"], environment="missing.txt")
    [problem] = program_problems(spec, model, "model/model.yaml")
    assert (problem.field, problem.message) == ("environment", "'missing.txt' does not exist in the model folder")


def test_check_names_an_environment_given_to_an_image(model: Path) -> None:
    spec = ModelSpec(name="model", image="registry.example.org/model:1", environment="requirements.txt")
    [problem] = program_problems(spec, model, "model/model.yaml")
    assert (problem.field, problem.message) == (
        "environment",
        "an image brings its own environment; install the packages into the image",
    )
