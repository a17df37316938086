"""Building a model's environment with real uv and real PyPI: once per content hash, under a
lock, atomically; a failed or stopped build leaves nothing that is used."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from modelrunner.errors import ModelrunnerError
from modelrunner.execution.environments import Environment, Environments, EnvironmentStopped

pytestmark = pytest.mark.store_free

# Pure Python, small, and not among modelrunner's dependencies.
PACKAGE = "pyjokes==0.8.3"


def model_folder(tmp_path: Path, name: str, requirements: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "requirements.txt").write_text(requirements)
    return folder


def prepare(environments: Environments, folder: Path, stopped: bool = False) -> tuple[Environment, str]:
    log = io.BytesIO()
    built = environments.prepare(folder, "requirements.txt", os.environ, (), log, lambda: stopped)
    return built, log.getvalue().decode()


def test_an_environment_is_built_once_and_reused(tmp_path: Path) -> None:
    environments = Environments(tmp_path / "environments")
    first = model_folder(tmp_path, "first", f"{PACKAGE}\n")
    # Another model (or another version) naming the same file gets the same environment.
    second = model_folder(tmp_path, "second", f"{PACKAGE}\n")

    started = time.monotonic()
    built, log = prepare(environments, first)
    cold = time.monotonic() - started
    started = time.monotonic()
    again, warm_log = prepare(environments, second)
    warm = time.monotonic() - started
    print(f"environment build: cold {cold:.2f}s, warm {warm * 1000:.1f}ms")

    assert "building the environment requirements.txt" in log and "+ pyjokes==0.8.3" in log
    assert "is built already" in warm_log and "building" not in warm_log
    assert again == built
    assert len(list((tmp_path / "environments" / "builds").iterdir())) == 1
    python = built.python
    done = subprocess.run(
        [python, "-c", "import importlib.metadata as m, pyjokes, modelrunner.job; print(m.version('pyjokes'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.stdout.strip() == "0.8.3", done.stderr
    # The helper alone, not modelrunner's dependencies: the environment is the model's own.
    assert subprocess.run([python, "-c", "import yaml"], capture_output=True, check=False).returncode != 0


def test_attempts_that_need_the_same_environment_together_build_it_once(tmp_path: Path) -> None:
    environments = Environments(tmp_path / "environments")
    folders = [model_folder(tmp_path, f"m{n}", f"{PACKAGE}\n# together\n") for n in range(3)]
    logs: list[str] = []

    def attempt(folder: Path) -> None:
        logs.append(prepare(environments, folder)[1])

    threads = [threading.Thread(target=attempt, args=(folder,)) for folder in folders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert len(logs) == 3
    assert sum("building the environment" in log for log in logs) == 1
    assert len(list((tmp_path / "environments" / "builds").iterdir())) == 1


def test_a_failed_build_names_the_file_and_its_last_lines_and_is_not_kept(tmp_path: Path) -> None:
    environments = Environments(tmp_path / "environments")
    folder = model_folder(tmp_path, "broken", "modelrunner-no-such-package-xq7==1.0\n")

    for _ in range(2):  # not remembered as built: the next attempt tries again
        with pytest.raises(ModelrunnerError) as failed:
            prepare(environments, folder)
        assert "the environment requirements.txt could not be built (uv ended with exit status" in failed.value.message
        assert "modelrunner-no-such-package-xq7" in failed.value.message
    assert list((tmp_path / "environments" / "builds").iterdir()) == []
    assert not [p for p in (tmp_path / "environments").iterdir() if p.is_symlink()]


def test_a_build_stopped_half_way_is_never_used(tmp_path: Path) -> None:
    environments = Environments(tmp_path / "environments")
    folder = model_folder(tmp_path, "stopped", f"{PACKAGE}\n# stopped\n")
    log = io.BytesIO()

    with pytest.raises(EnvironmentStopped):
        environments.prepare(folder, "requirements.txt", os.environ, (), log, lambda: b"$ " in log.getvalue())
    assert not [p for p in (tmp_path / "environments").iterdir() if p.is_symlink()]

    built, text = prepare(environments, folder)
    assert "building the environment" in text
    assert built.python is not None
    assert len(list((tmp_path / "environments" / "builds").iterdir())) == 1


def test_requirements_that_refer_to_other_files_are_built_per_model_version(tmp_path: Path) -> None:
    environments = Environments(tmp_path / "environments")
    folder = model_folder(tmp_path, "layered", "-r base.txt\n")
    (folder / "base.txt").write_text("pyjokes==0.8.3\n")

    first, log = prepare(environments, folder)
    assert "refers to other files of the model: its environment is built per version" in log
    (folder / "base.txt").write_text("pyjokes==0.8.2\n")  # requirements.txt itself is unchanged
    second, log = prepare(environments, folder)

    assert "building the environment" in log
    assert second != first
    version = "import importlib.metadata as m; print(m.version('pyjokes'))"
    said = subprocess.run([second.python, "-c", version], capture_output=True, text=True, check=False)
    assert said.stdout.strip() == "0.8.2", said.stderr


def test_a_missing_tool_is_named(tmp_path: Path) -> None:
    environments = Environments(tmp_path / "environments")
    folder = tmp_path / "conda"
    folder.mkdir()
    (folder / "environment.yml").write_text("dependencies: [python=3.11]\n")

    with pytest.raises(ModelrunnerError) as failed:
        environments.prepare(folder, "environment.yml", {"PATH": str(tmp_path / "empty")}, (), io.BytesIO())
    assert failed.value.message == (
        "environment: environment.yml is a conda environment, and none of micromamba, mamba, conda "
        "is installed on this machine"
    )


needs_r = pytest.mark.skipif(
    shutil.which("Rscript") is None, reason="R is not installed (Debian: apt-get install r-base-core)"
)


def r_repository(tmp_path: Path) -> Path:
    """A CRAN-like repository in a folder holding one small package, mrtiny, and an R profile
    that names it (as a machine's Rprofile.site names its CRAN mirror); returns the profile."""
    source = tmp_path / "mrtiny"
    (source / "R").mkdir(parents=True)
    (source / "DESCRIPTION").write_text(
        "Package: mrtiny\nVersion: 0.1.0\nTitle: Tiny\nDescription: A test package.\nLicense: MIT\n"
        "Author: A. Person\nMaintainer: A. Person <a@example.org>\n"
    )
    (source / "NAMESPACE").write_text("export(hello)\n")
    (source / "R" / "hello.R").write_text('hello <- function() "hello from mrtiny"\n')
    contrib = tmp_path / "repository" / "src" / "contrib"
    contrib.mkdir(parents=True)
    subprocess.run(["R", "CMD", "build", "--no-manual", str(source)], cwd=contrib, check=True, capture_output=True)
    subprocess.run(["Rscript", "-e", f"tools::write_PACKAGES('{contrib}', type = 'source')"], check=True)
    profile = tmp_path / "Rprofile"
    profile.write_text(f'options(repos = c(CRAN = "file://{tmp_path / "repository"}"))\n')
    return profile


@needs_r
def test_an_r_description_is_built_into_a_library_the_model_sees(tmp_path: Path) -> None:
    profile = r_repository(tmp_path)
    environments = Environments(tmp_path / "environments")
    folder = tmp_path / "rmodel"
    folder.mkdir()
    (folder / "DESCRIPTION").write_text("Package: rmodel\nVersion: 0.1\nImports: mrtiny, stats\n")
    runner = {**os.environ, "R_PROFILE_USER": str(profile)}
    log = io.BytesIO()

    built = environments.prepare(folder, "DESCRIPTION", runner, ("R_PROFILE_USER",), log)

    assert built.python is None
    said = subprocess.run(
        ["Rscript", "-e", "library(mrtiny); cat(hello())"],
        env={**os.environ, **built.variables(os.environ["PATH"])},
        capture_output=True,
        text=True,
        check=False,
    )
    assert said.stdout == "hello from mrtiny", said.stderr
    assert "modelrunner: $ " in log.getvalue().decode() and "<script>" in log.getvalue().decode()

    (folder / "DESCRIPTION").write_text("Package: rmodel\nVersion: 0.1\nImports: mrtiny, mrnosuch (>= 1.0)\n")
    with pytest.raises(ModelrunnerError) as failed:
        environments.prepare(folder, "DESCRIPTION", runner, ("R_PROFILE_USER",), io.BytesIO())
    assert failed.value.message.startswith("the environment DESCRIPTION could not be built (Rscript ended")
    assert "not installed: mrnosuch" in failed.value.message
