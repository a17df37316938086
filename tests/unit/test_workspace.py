"""Workspace discovery, and how it follows edits without a restart."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from modelrunner.errors import NotFound, SpecError
from modelrunner.spec.workspace import Workspace, create_workspace

TEST_WORKSPACE = Path(__file__).parents[1] / "workspace"
TEST_MODELS = ["failing", "flaky", "forker", "no_output", "noop", "sleeper"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A private copy of the test workspace, broken model included."""
    destination = tmp_path / "ws"
    shutil.copytree(TEST_WORKSPACE, destination, ignore=shutil.ignore_patterns("__pycache__"))
    return destination


def add_model(root: Path, relative: str, name: str | None = None) -> Path:
    folder = root / relative
    folder.mkdir(parents=True)
    (folder / "model.yaml").write_text(f"name: {name or folder.name}\ncommand: [python, run.py]\n")
    (folder / "run.py").write_text("print('hi')\n")
    return folder


def touch_later(path: Path) -> None:
    """Make sure an edit is seen even on a file system with coarse modification times."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


def test_finds_the_valid_models_sorted_by_name(root: Path) -> None:
    workspace = Workspace(root)

    assert [m.name for m in workspace.models()] == TEST_MODELS
    noop = workspace.model("noop")
    assert noop.folder == (root / "noop").resolve()
    assert len(noop.version) == 16


def test_broken_model_is_reported_not_listed(root: Path) -> None:
    workspace = Workspace(root)

    problems = workspace.problems()
    assert problems
    assert {p.file for p in problems} == {"broken/model.yaml"}
    with pytest.raises(SpecError) as raised:
        workspace.model("broken")
    assert "broken/model.yaml" in raised.value.message
    assert any("unknown_field" in p for p in raised.value.details["problems"])


def test_unknown_model(root: Path) -> None:
    with pytest.raises(NotFound, match="unknown model 'nope'"):
        Workspace(root).model("nope")


def test_missing_workspace_folder(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        Workspace(tmp_path / "absent")


def test_missing_workspace_file_is_a_problem(tmp_path: Path) -> None:
    add_model(tmp_path, "demo")

    problems = Workspace(tmp_path).problems()

    assert [(p.file, p.field) for p in problems] == [("modelrunner.yaml", "")]
    assert "modelrunner init" in problems[0].message


def test_unknown_field_in_workspace_file(tmp_path: Path) -> None:
    (tmp_path / "modelrunner.yaml").write_text("name: ws\nbakends: {}\n")

    problems = Workspace(tmp_path).problems()

    assert [(p.file, p.field) for p in problems] == [("modelrunner.yaml", "bakends")]


def test_models_in_nested_folders_are_found_and_hidden_folders_skipped(tmp_path: Path) -> None:
    (tmp_path / "modelrunner.yaml").write_text("name: ws\n")
    add_model(tmp_path, "epi/rt")
    add_model(tmp_path, "energy/forecasts/load")
    add_model(tmp_path, ".hidden/secret")
    add_model(tmp_path, "epi/rt/variant")  # below a model folder: part of that model
    add_model(tmp_path, "node_modules/pkg")

    workspace = Workspace(tmp_path)

    assert [m.name for m in workspace.models()] == ["load", "rt"]
    assert workspace.problems() == []


def test_the_same_name_twice_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "modelrunner.yaml").write_text("name: ws\n")
    add_model(tmp_path, "a/demo")
    add_model(tmp_path, "b/demo")

    problems = Workspace(tmp_path).problems()

    assert [(p.file, p.field) for p in problems] == [("b/demo/model.yaml", "name")]
    assert "a/demo/model.yaml" in problems[0].message


def test_an_edited_model_gets_a_new_version_and_others_keep_theirs(root: Path) -> None:
    workspace = Workspace(root)
    noop_before = workspace.model("noop").version
    sleeper_before = workspace.model("sleeper").version

    script = root / "noop" / "noop.py"
    script.write_text(script.read_text() + "# edited\n")
    touch_later(script)

    assert workspace.model("noop").version != noop_before
    assert workspace.model("sleeper").version == sleeper_before


def test_an_edit_that_is_undone_gives_the_old_version_back(root: Path) -> None:
    workspace = Workspace(root)
    script = root / "noop" / "noop.py"
    original = script.read_text()
    before = workspace.model("noop").version

    script.write_text(original + "# edited\n")
    touch_later(script)
    edited = workspace.model("noop").version
    script.write_text(original)
    touch_later(script)

    assert edited != before
    assert workspace.model("noop").version == before


def test_an_edited_spec_is_reloaded(root: Path) -> None:
    workspace = Workspace(root)
    spec_file = root / "noop" / "model.yaml"
    assert workspace.model("noop").spec.title == "Does nothing"

    spec_file.write_text(spec_file.read_text().replace("Does nothing", "Does very little"))
    touch_later(spec_file)

    assert workspace.model("noop").spec.title == "Does very little"


def test_a_model_broken_by_an_edit_and_fixed_again(root: Path) -> None:
    workspace = Workspace(root)
    spec_file = root / "noop" / "model.yaml"
    good = spec_file.read_text()

    spec_file.write_text(good + "colour: blue\n")
    touch_later(spec_file)
    with pytest.raises(SpecError, match="colour"):
        workspace.model("noop")
    assert "noop" not in [m.name for m in workspace.models()]

    spec_file.write_text(good)
    touch_later(spec_file)
    assert workspace.model("noop").spec.title == "Does nothing"


def test_new_and_removed_model_folders_are_seen(root: Path) -> None:
    workspace = Workspace(root)
    assert "fresh" not in [m.name for m in workspace.models()]

    add_model(root, "fresh")
    assert workspace.model("fresh").spec.command == ["python", "run.py"]

    shutil.rmtree(root / "fresh")
    with pytest.raises(NotFound):
        workspace.model("fresh")


def test_byproducts_of_running_a_model_keep_its_version(root: Path) -> None:
    workspace = Workspace(root)
    before = workspace.model("noop").version

    cache = root / "noop" / "__pycache__"
    cache.mkdir()
    (cache / "noop.cpython-311.pyc").write_bytes(b"\x00compiled")
    (root / "noop" / "noop.py~").write_text("editor backup")

    assert workspace.model("noop").version == before


def test_create_workspace_gives_a_workspace_without_problems(tmp_path: Path) -> None:
    created = create_workspace(tmp_path / "new")

    assert Path("modelrunner.yaml") in created
    workspace = Workspace(tmp_path / "new")
    assert workspace.problems() == []
    assert [m.name for m in workspace.models()] == ["growth"]


def test_create_workspace_refuses_a_folder_in_use(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")

    with pytest.raises(SpecError, match="not empty"):
        create_workspace(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def write_spec(root: Path, name: str, command: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "model.yaml").write_text(f"name: {name}\ncommand: {command}\n")
    return folder


def test_a_program_that_cannot_be_found_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "modelrunner.yaml").write_text("name: ws\n")
    write_spec(tmp_path, "ghost", "[modelrunner-no-such-program, --fit]")
    write_spec(tmp_path, "fine", "[sh, -c, 'true']")

    problems = Workspace(tmp_path).problems()

    assert [(p.file, p.field) for p in problems] == [("ghost/model.yaml", "command")]
    assert "'modelrunner-no-such-program' is not found on PATH" in problems[0].message


def test_a_script_in_the_model_folder_must_exist_and_be_executable(tmp_path: Path) -> None:
    (tmp_path / "modelrunner.yaml").write_text("name: ws\n")
    write_spec(tmp_path, "absent", "[./run.sh]")
    folder = write_spec(tmp_path, "plain", "[./run.sh]")
    (folder / "run.sh").write_text("#!/bin/sh\n")
    folder = write_spec(tmp_path, "bare", "[run.sh]")
    (folder / "run.sh").write_text("#!/bin/sh\n")
    folder = write_spec(tmp_path, "ready", "[./run.sh]")
    (folder / "run.sh").write_text("#!/bin/sh\n")
    (folder / "run.sh").chmod(0o755)

    problems = {p.file: p for p in Workspace(tmp_path).problems()}

    assert sorted(problems) == ["absent/model.yaml", "bare/model.yaml", "plain/model.yaml"]
    assert all(p.field == "command" for p in problems.values())
    assert "does not exist" in problems["absent/model.yaml"].message
    assert "chmod +x" in problems["plain/model.yaml"].message
    assert "'./run.sh'" in problems["bare/model.yaml"].message


DATASETS = """\
datasets:
  cases:
    source: git
    repo: case-data
    paths: [cases.csv]
    poll: 30m
  stations:
    source: files
    url: s3://bucket/stations
    options: {endpoint_url: "http://127.0.0.1:9000"}
  population:
    source: http
    url: https://example.org/population.csv
    poll: 1d
"""


def test_datasets_are_read_with_their_poll_intervals(tmp_path: Path) -> None:
    (tmp_path / "modelrunner.yaml").write_text(DATASETS)

    datasets = Workspace(tmp_path).datasets()

    assert sorted(datasets) == ["cases", "population", "stations"]
    assert (datasets["cases"].source, datasets["cases"].poll, datasets["cases"].paths) == ("git", 1800, ["cases.csv"])
    assert (datasets["population"].poll, datasets["stations"].poll) == (86400, None)


def test_an_edited_workspace_file_is_reread(tmp_path: Path) -> None:
    spec = tmp_path / "modelrunner.yaml"
    spec.write_text(DATASETS)
    workspace = Workspace(tmp_path)
    assert "cases" in workspace.datasets()

    spec.write_text(DATASETS.replace("  cases:", "  counts:"))
    touch_later(spec)

    assert "counts" in workspace.datasets() and "cases" not in workspace.datasets()
    with pytest.raises(NotFound, match="unknown dataset 'cases'"):
        workspace.dataset("cases")


@pytest.mark.parametrize(
    ("declared", "field", "message"),
    [
        ("  cases:\n    source: svn\n", "datasets.cases", "source 'svn' is not one of 'git', 'files', 'http'"),
        ("  cases:\n    source: git\n", "datasets.cases.repo", "is required"),
        ("  cases:\n    source: git\n    repo: r\n    poll: soon\n", "datasets.cases.poll", "'30m'"),
        ("  cases:\n    source: git\n    repo: r\n    paths: [../up]\n", "datasets.cases.paths", "relative"),
        ("  cases:\n    source: http\n    url: ftp://x/y\n", "datasets.cases.url", "http:// or https://"),
        ("  cases:\n    source: files\n    url: d\n    bucket: b\n", "datasets.cases.bucket", "not a known field"),
        ("  Cases:\n    source: files\n    url: d\n", "datasets", "dataset 'Cases': use lowercase"),
    ],
)
def test_a_wrong_dataset_declaration_is_named_by_field(tmp_path: Path, declared: str, field: str, message: str) -> None:
    (tmp_path / "modelrunner.yaml").write_text("datasets:\n" + declared)

    problems = Workspace(tmp_path).problems()

    assert [p.field for p in problems] == [field]
    assert message in problems[0].message
    with pytest.raises(SpecError, match=r"modelrunner\.yaml is broken"):
        Workspace(tmp_path).datasets()


def test_an_input_naming_an_undeclared_dataset_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "modelrunner.yaml").write_text(DATASETS)
    folder = add_model(tmp_path, "projection")
    spec = "name: projection\ncommand: [python, run.py]\ninputs: {cases: cases, pop: pop}\n"
    (folder / "model.yaml").write_text(spec)

    problems = Workspace(tmp_path).problems()

    assert [(p.field, p.message) for p in problems] == [
        ("inputs.pop", "dataset 'pop' is not declared in modelrunner.yaml")
    ]
