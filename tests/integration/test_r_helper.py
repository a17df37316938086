"""modelrunner's R helper package, installed from the package's own files with R CMD INSTALL and
used by Rscript under the model contract: what each function gives, and the messages when R or
jsonlite is missing."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from modelrunner.errors import ModelrunnerError
from modelrunner.execution.r_helper import RHelper, install, with_library
from tests.acceptance.test_cli import cli
from tests.conftest import REPO

pytestmark = [
    pytest.mark.store_free,
    pytest.mark.skipif(
        shutil.which("Rscript") is None,
        reason="R is not installed (Debian: apt-get install r-base-core r-cran-jsonlite)",
    ),
]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("r-library")
    install(folder)
    return folder


def _rscript(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["Rscript", "-e", code], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_the_helper_reads_the_contract_as_the_python_helper_does(library: Path, tmp_path: Path) -> None:
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"window": 7, "regions": ["north", "south"], "scenario": {"name": "base"}}))
    env = {
        "PATH": os.environ["PATH"],
        "R_LIBS": str(library),
        "MODELRUNNER_PARAMS": str(params),
        "MODELRUNNER_INPUTS": str(tmp_path / "inputs"),
        "MODELRUNNER_OUTPUTS": str(tmp_path / "outputs"),
        "MODELRUNNER_CHECKPOINT": str(tmp_path / "checkpoint"),
    }
    code = """
    library(modelrunner)
    p <- params()
    cat(class(p$window), p$window * 2, length(p$regions), p$scenario$name, "\\n")
    cat(inputs("cases", "cases.csv"), outputs(), outputs("rt.csv"), checkpoint("state.rds"), "\\n")
    progress(0.25, "a quarter")
    progress(7, "too far\\non two lines")
    progress(-1)
    """
    done = _rscript(code, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "integer 14 2 base ",
        f"{tmp_path}/inputs/cases/cases.csv {tmp_path}/outputs {tmp_path}/outputs/rt.csv "
        f"{tmp_path}/checkpoint/state.rds ",
        "::progress:: 0.2500 a quarter",
        "::progress:: 1.0000 too far on two lines",
        "::progress:: 0.0000",
    ]
    outside = _rscript("library(modelrunner); outputs()", {"PATH": os.environ["PATH"], "R_LIBS": str(library)})
    assert outside.returncode == 1
    assert "MODELRUNNER_OUTPUTS is not set: is this running under modelrunner?" in outside.stderr


def test_an_error_that_stops_a_script_is_its_failure_note(library: Path, tmp_path: Path) -> None:
    note = tmp_path / "failure-note"
    env = {"PATH": os.environ["PATH"], "R_LIBS": str(library), "MODELRUNNER_FAILURE_NOTE": str(note)}
    caught = _rscript("library(modelrunner); x <- tryCatch(stop('caught'), error = function(e) 1); cat('fine')", env)
    assert (caught.returncode, caught.stdout, note.exists()) == (0, "fine", False)
    stopped = _rscript("library(modelrunner); f <- function(region) stop('no cases\\n for ', region); f('north')", env)
    assert stopped.returncode == 1
    assert 'Error in f("north") : no cases' in stopped.stderr  # R still prints it to the log
    assert note.read_text() == "no cases for north\n"
    own = "library(modelrunner); options(error = function() quit(status = 3)); stop('mine')"
    assert _rscript(own, {**env, "MODELRUNNER_FAILURE_NOTE": str(tmp_path / "other")}).returncode == 3
    assert not (tmp_path / "other").exists()


def test_missing_r_and_missing_jsonlite_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelrunnerError, match=r"^R is not installed here \(no R on PATH\)"):
        install(tmp_path / "nowhere", path=str(tmp_path))
    with pytest.raises(ModelrunnerError, match=r"^R is not installed here"):
        RHelper(tmp_path / "helper").library(str(tmp_path))
    # Debian's R finds jsonlite in its site library, which R_LIBS_SITE replaces.
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("R_LIBS_SITE", str(empty))
    with pytest.raises(ModelrunnerError, match=r"the R package jsonlite, .* apt-get install r-cran-jsonlite"):
        install(tmp_path / "without-jsonlite")


def test_a_machine_installs_the_helper_once_and_models_keep_their_own_libraries_first(tmp_path: Path) -> None:
    helper = RHelper(tmp_path / "environments" / "r-helper")
    first = helper.library(os.environ["PATH"])
    installed = (first / "modelrunner" / "DESCRIPTION").stat().st_mtime_ns
    assert RHelper(helper.root).library(os.environ["PATH"]) == first
    assert (first / "modelrunner" / "DESCRIPTION").stat().st_mtime_ns == installed
    assert [p.name for p in helper.root.iterdir() if not p.name.endswith(".lock")] == [first.name]
    assert (helper.root.stat().st_mode & 0o777) == 0o711
    env = with_library({"R_LIBS": "/models/own-library"}, first)
    assert env["R_LIBS"] == f"/models/own-library:{first}"


def test_the_cli_installs_the_helper_into_a_library(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MODELRUNNER_")}
    done = cli("r-helper", "install", "--library", str(tmp_path / "lib"), env=env)
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.strip()
        == f"installed modelrunner's R helper into {tmp_path / 'lib'}: library(modelrunner) loads it"
    )
    loaded = _rscript(
        "library(modelrunner); cat('loaded')", {"PATH": os.environ["PATH"], "R_LIBS": str(tmp_path / "lib")}
    )
    assert loaded.stdout == "loaded"
    refused = cli("r-helper", "install", "--library", str(tmp_path / "lib2"), env={**env, "PATH": str(tmp_path)})
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "error: R is not installed here (no R on PATH): install it (Debian: apt-get install r-base-core)"
    ]


def test_a_model_without_jsonlite_runs_and_its_log_says_why_the_helper_will_not_load(tmp_path: Path) -> None:
    workspace = tmp_path / "r_models"
    shutil.copytree(REPO / "examples" / "r_models", workspace)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("MODELRUNNER_")}
    env["R_LIBS_SITE"] = str(empty)  # Debian's R finds jsonlite in its site library, which this replaces
    done = cli("run", "rt_estimate", "--local", "--workspace", str(workspace), env=env, cwd=tmp_path, timeout=180)
    assert done.returncode == 1
    (log,) = (tmp_path / "modelrunner-outputs").glob("rt_estimate-*/modelrunner.log")
    text = log.read_text()
    assert (
        "modelrunner: library(modelrunner) is not available to this model: the R package jsonlite, which "
        "modelrunner's R helper needs, is not installed: install it (Debian: apt-get install r-cran-jsonlite;"
    ) in text
    # R's own words after the reason, quoted as its locale does
    assert re.search(r"there is no package called .modelrunner.", text)
