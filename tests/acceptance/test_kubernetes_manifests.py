"""The Kubernetes base (deploy/kubernetes) renders with kustomize, every object it renders is valid
against Kubernetes' own schemas, its probes ask the app's real health route, its processes run as
no root, and every setting it gives is one that the process it is given to reads."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import typer
import yaml

from modelrunner.api.app import create_app
from modelrunner.cli.main import app as command_line
from modelrunner.platform import Platform
from modelrunner.settings import Settings
from tests.conftest import REPO

pytestmark = pytest.mark.store_free

BASE = REPO / "deploy" / "kubernetes"
# The oldest minor release the base is meant for, and the newest the schemas know.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (Debian: apt-get install kubernetes-client): it renders the base")
    # kubectl kustomize, not a separate kustomize: what an operator applies with `kubectl apply -k`.
    output = subprocess.run([kubectl, "kustomize", str(BASE)], capture_output=True, text=True, check=True).stdout
    return [document for document in yaml.safe_load_all(output) if document]


def of_kind(rendered: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in rendered if o["kind"] == kind}


def containers(rendered: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        c["name"]: c
        for d in of_kind(rendered, "Deployment").values()
        for c in d["spec"]["template"]["spec"]["containers"]
    }


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_is_valid_against_the_kubernetes_schemas(rendered: list[dict[str, Any]], version: str) -> None:
    for resource in rendered:
        # strict: a misspelt field is an error, not something the API server would silently drop.
        kubernetes_validate.validate(resource, version, strict=True)
    kinds = sorted(o["kind"] for o in rendered)
    assert kinds == ["ConfigMap", "ConfigMap", "Deployment", "Deployment", "PersistentVolumeClaim", "Service"]


def test_the_image_is_the_one_the_containerfile_builds_and_its_tag_is_set_by_kustomize(
    rendered: list[dict[str, Any]],
) -> None:
    assert {c["image"] for c in containers(rendered).values()} == {"localhost/modelrunner:latest"}


def test_the_probes_ask_the_health_route_of_the_app(rendered: list[dict[str, Any]], tmp_path: Path) -> None:
    serve = containers(rendered)["serve"]
    probes = [serve[name] for name in ("startupProbe", "readinessProbe", "livenessProbe")]
    health = create_app(Platform(Settings(workspace=tmp_path, data_dir=tmp_path / "state"))).url_path_for("healthz")
    ports = {port["name"]: port["containerPort"] for port in serve["ports"]}
    settings = of_kind(rendered, "ConfigMap")
    (env,) = [c["data"] for name, c in settings.items() if name.startswith("modelrunner-settings")]

    assert {probe["httpGet"]["path"] for probe in probes} == {health}
    assert {probe["httpGet"]["port"] for probe in probes} == {"http"}
    assert ports["http"] == int(env["MODELRUNNER_PORT"])
    (service,) = of_kind(rendered, "Service").values()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert (
        service["spec"]["selector"]
        == of_kind(rendered, "Deployment")["modelrunner-serve"]["spec"]["selector"]["matchLabels"]
    )
    assert env["MODELRUNNER_SERVER"] == f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"


def test_nothing_runs_as_root_or_can_become_it(rendered: list[dict[str, Any]]) -> None:
    for deployment in of_kind(rendered, "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_the_database_url_comes_from_a_secret_file_and_the_state_from_the_volume_claim(
    rendered: list[dict[str, Any]],
) -> None:
    pod = of_kind(rendered, "Deployment")["modelrunner-serve"]["spec"]["template"]["spec"]
    (serve,) = pod["containers"]
    env = {e["name"]: e for e in serve["env"]}
    mounts = {m["name"]: m["mountPath"] for m in serve["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}

    url_file = Path(env["MODELRUNNER_DATABASE_URL_FILE"]["value"])
    assert volumes["database"]["secret"]["secretName"] == "modelrunner-database"
    assert url_file.parent == Path(mounts["database"])
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] in of_kind(rendered, "PersistentVolumeClaim")
    assert "MODELRUNNER_DATABASE_URL" not in env  # the password is in no environment


def test_every_variable_given_is_one_that_modelrunner_reads(rendered: list[dict[str, Any]]) -> None:
    commands = typer.main.get_command(command_line)
    assert isinstance(commands, typer.core.TyperGroup)
    options = {
        name: {str(p.envvar) for p in commands.commands[name].params if p.envvar} for name in ("serve", "worker")
    }
    settings = {f"MODELRUNNER_{name.upper()}" for name in Settings.model_fields}
    (shared,) = [c["data"] for n, c in of_kind(rendered, "ConfigMap").items() if n.startswith("modelrunner-settings")]

    assert set(shared) <= settings | options["serve"] | options["worker"]
    for container in containers(rendered).values():
        own = {e["name"].removesuffix("_FILE") for e in container.get("env", [])}
        command = container["args"][0]
        assert own <= options[command] | (settings if command == "serve" else set()), command
