"""Image models without an engine: how a reference is pinned to a digest, the container command an
attempt becomes, and what `check` says of an image model sent to a backend that cannot run it."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelrunner.engine.image_versions import ImageName, ImageResolver, ImageUnavailable, image_version, pin_images
from modelrunner.errors import ModelrunnerError
from modelrunner.execution.container_launch import ContainerRun, container_command, memory_bytes
from modelrunner.execution.job import AttemptJob
from modelrunner.spec.model_spec import ModelSpec, Resources
from modelrunner.spec.workspace import Workspace

pytestmark = pytest.mark.store_free

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("reference", "pinned"),
    [
        ("localhost/model:1", f"localhost/model:1@{DIGEST}"),
        ("registry.example:5000/team/model", f"registry.example:5000/team/model@{DIGEST}"),
        ("registry.example:5000/team/model:v2", f"registry.example:5000/team/model:v2@{DIGEST}"),
    ],
)
def test_a_tag_is_pinned_to_its_digest_keeping_the_name(reference: str, pinned: str) -> None:
    assert ImageName.parse(reference).pinned(DIGEST) == pinned


def test_a_reference_by_digest_is_taken_apart() -> None:
    name = ImageName.parse(f"localhost/model:1@{DIGEST}")
    assert (name.repository, name.tag, name.digest) == ("localhost/model", "1", DIGEST)


def _job(**changes: object) -> AttemptJob:
    fields: dict[str, object] = {
        "run_id": 7,
        "attempt_id": 9,
        "attempt_number": 1,
        "model_name": "boxed",
        "model_version": "0" * 16,
        "command": [],
        "params": {},
        "snapshot_uri": "file:///nowhere",
        "image": f"localhost/model:1@{DIGEST}",
    }
    return AttemptJob(**{**fields, **changes})  # type: ignore[arg-type]


RUN = ContainerRun("/usr/bin/podman", "none", (65534, 65534), {"modelrunner.installation": "x"})


def test_the_container_command_mounts_the_contract_and_puts_no_value_on_its_command_line() -> None:
    job = _job(
        command=["python3", "model.py"],
        resources=Resources(memory="128Mi", cpu=1.5),
        callback_token=None,
        item='"north"',
    )
    command, env = container_command(RUN, job, "c1", Path("/s"), Path("/c"), {"TEAM_SETTING": "secret-ish"})

    assert command[-3:] == [job.image, "python3", "model.py"]  # the command replaces the image's CMD
    joined = " ".join(command)
    assert "--network none" in joined and "--user 65534:65534" in joined
    assert "--memory 134217728" in joined and "--cpus 1.5" in joined
    assert "/s/outputs:/modelrunner/outputs" in joined and "/c:/modelrunner/checkpoint" in joined
    assert env["MODELRUNNER_OUTPUTS"] == "/modelrunner/outputs" and env["MODELRUNNER_ITEM"] == '"north"'
    assert "--env TEAM_SETTING" in joined and "secret-ish" not in joined
    # The image's own CMD when the model gives no command.
    assert container_command(RUN, _job(), "c1", Path("/s"), Path("/c"), {})[0][-1] == job.image


def test_a_model_that_is_not_an_image_is_refused_by_name() -> None:
    with pytest.raises(ModelrunnerError, match="model 'boxed' is not an image model"):
        container_command(RUN, _job(image=None, command=["python", "x.py"]), "c1", Path("/s"), Path("/c"), {})


@pytest.mark.parametrize(("memory", "expected"), [("512Mi", 512 * 2**20), ("2G", 2 * 10**9), ("1000", 1000)])
def test_memory_sizes(memory: str, expected: int) -> None:
    assert memory_bytes(memory) == expected


def _workspace(root: Path, config: str) -> Workspace:
    (root / "modelrunner.yaml").write_text(config)
    (root / "boxed").mkdir()
    (root / "boxed" / "model.yaml").write_text("name: boxed\nimage: localhost/model:1\n")
    return Workspace(root)


def test_check_names_an_image_model_sent_to_a_backend_that_cannot_run_it(tmp_path: Path) -> None:
    problems = _workspace(tmp_path, "name: w\n").problems()  # the one local backend
    assert [(p.file, p.field) for p in problems] == [("boxed/model.yaml", "image")]
    assert "model 'boxed'" in problems[0].message and "backend 'local' (type: local)" in problems[0].message
    assert "starts processes, not containers" in problems[0].message and "type: container" in problems[0].message


def test_check_follows_routing_rules_to_the_backends_an_image_model_may_reach(tmp_path: Path) -> None:
    config = """\
name: w
backends:
  boxes: {type: container}
  cluster: {type: kubernetes, image: registry.example/runner:1}
default_backend: boxes
routing:
  - {group: hpc, backend: cluster, models: ["box*"]}
"""
    # (whether this machine has podman is another check's business)
    problems = [p for p in _workspace(tmp_path, config).problems() if p.field == "image"]
    assert len(problems) == 1 and "backend 'cluster' (type: kubernetes)" in problems[0].message
    assert "runs `modelrunner exec` in its own image, not in the model's" in problems[0].message


def test_check_is_content_with_a_container_backend(tmp_path: Path) -> None:
    problems = _workspace(tmp_path, "name: w\nbackends:\n  boxes: {type: container, network: host}\n").problems()
    assert [p for p in problems if p.field == "image"] == []


def test_a_pipeline_pins_each_image_step_and_its_version_follows_the_digests() -> None:
    spec = ModelSpec.model_validate(
        {
            "name": "chain",
            "steps": {
                "fit": {"image": "localhost/fit:1"},
                "report": {"command": ["python", "report.py"], "needs": ["fit"]},
            },
        }
    )
    pinned = pin_images(spec, {"fit": f"localhost/fit:1@{DIGEST}"})
    assert pinned.part("fit").image == f"localhost/fit:1@{DIGEST}" and pinned.part("report").image is None
    other = "sha256:" + "cd" * 32
    version = image_version("0123456789abcdef", {"fit": f"localhost/fit:1@{DIGEST}"})
    assert len(version) == 16 and version != "0123456789abcdef"
    assert version != image_version("0123456789abcdef", {"fit": f"localhost/fit:1@{other}"})
    assert version == image_version("0123456789abcdef", {"fit": f"localhost/fit:1@{DIGEST}"})


def test_check_names_a_container_backend_whose_engine_is_not_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs"))
    problems = _workspace(tmp_path, "name: w\nbackends:\n  boxes: {type: container}\n").problems()
    assert [(p.file, p.field) for p in problems] == [("modelrunner.yaml", "backends.boxes.engine")]
    assert "podman or docker is not installed on this machine" in problems[0].message


def test_an_image_is_not_resolved_without_an_engine_and_the_refusal_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ImageUnavailable, match="image 'localhost/model:1' cannot be resolved: image models need"):
        ImageResolver().pinned("localhost/model:1")
