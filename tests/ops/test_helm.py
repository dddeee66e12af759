"""The Helm chart (deploy/helm/streamrec): ``helm lint --strict`` passes, and what ``helm
template`` renders is valid Kubernetes (kubernetes-validate, strict) with the services, ports and
image names of the kustomize base (helm from the same PyPI wheel as kubectl: see tools.py)."""

from __future__ import annotations

import importlib
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

kubernetes_validate: Any = importlib.import_module("kubernetes_validate")

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "streamrec"
SERVICES = {"ingest": 8000, "recommender": 8001, "trainer": 8002, "stream-processor": 8003}


@pytest.fixture(scope="module")
def helm(tools: ModuleType) -> str:
    found: str = tools.layer_tool("helm")
    return found


def _helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)


def _template(helm: str, *sets: str) -> list[dict[str, Any]]:
    args = [a for s in sets for a in ("--set", s)]
    result = _helm(helm, "template", "rel", str(CHART), "--namespace", "streamrec", *args)
    assert result.returncode == 0, result.stderr
    return [o for o in yaml.safe_load_all(result.stdout) if o]


def test_helm_lint(helm: str) -> None:
    result = _helm(helm, "lint", "--strict", str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rendered_objects_are_valid(helm: str) -> None:
    failures = []
    for obj in _template(helm):
        try:
            kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert not failures, "\n".join(failures)


def test_services_ports_and_images(helm: str) -> None:
    objects = _template(helm, "image.registry=registry.example.com/", "image.tag=1.4.0")
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    assert set(deployments) == {f"rel-{s}" for s in SERVICES}
    for service, port in SERVICES.items():
        (container,) = deployments[f"rel-{service}"]["spec"]["template"]["spec"]["containers"]
        assert container["image"] == f"registry.example.com/streamrec/{service}:1.4.0"
        assert container["ports"][0]["containerPort"] == port
        assert {"name": "STREAMREC_HTTP__PORT", "value": str(port)} in container["env"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    trainer = deployments["rel-trainer"]["spec"]
    assert trainer["strategy"]["type"] == "Recreate"
    assert trainer["replicas"] == 1
