"""`modelrunner init --template`: a new workspace's example model in each form, checked and run
locally as a new user would, with the same contract and outputs."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pytest
import yaml

from tests.acceptance.test_cli import cli, nowhere, ok

pytestmark = pytest.mark.store_free


def _series(out: Path) -> list[dict[str, str]]:
    with open(out / "series.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(
    "form",
    [
        "notebook",
        pytest.param(
            "r",
            marks=pytest.mark.skipif(
                not shutil.which("Rscript"), reason="R is not installed (apt-get install r-base-core r-cran-jsonlite)"
            ),
        ),
    ],
)
def test_the_example_model_runs_locally_in_its_form(form: str, tmp_path: Path) -> None:
    env = nowhere(dict(os.environ))
    new = tmp_path / "new"
    created = ok("init", str(new), "--template", form, env=env)
    assert f"its model growth: {form}" in created
    assert "growth" in ok("check", "--workspace", str(new), env=env)
    out = tmp_path / "out"
    params = ("-p", "steps=20", "-p", "rate=0.5")
    ok("run", "growth", "--local", "-w", str(new), *params, "--output-dir", str(out), env=env)
    series = _series(out)
    assert [row["step"] for row in series] == [str(step) for step in range(21)]
    assert float(series[0]["population"]) == pytest.approx(10)
    assert 10 < float(series[-1]["population"]) < 1000
    if form == "notebook":
        assert "logistic population growth" in (out / "growth.html").read_text().lower()


def test_the_image_template_declares_a_container_backend_for_its_image(tmp_path: Path) -> None:
    env = nowhere(dict(os.environ))
    new = tmp_path / "new"
    created = ok("init", str(new), "--template", "image", env=env)
    assert "podman build -t localhost/growth:latest" in created
    spec = yaml.safe_load((new / "growth" / "model.yaml").read_text())
    assert spec["image"] == "localhost/growth:latest"
    assert yaml.safe_load((new / "modelrunner.yaml").read_text())["backends"][spec["backend"]]["type"] == "container"
    assert (new / "growth" / "Containerfile").is_file()


def test_an_unknown_template_is_refused_by_name(tmp_path: Path) -> None:
    refused = cli("init", str(tmp_path / "new"), "--template", "cobol", env=nowhere(dict(os.environ)))
    assert refused.returncode != 0
    assert "cobol" in refused.stderr and "notebook" in refused.stderr
    assert not (tmp_path / "new").exists()
