"""Every rendered object is valid against its schema, offline.

Built-in kinds: kubernetes-validate (strict: unknown fields are errors) for the oldest and the
newest Kubernetes version we support. Custom resources (Strimzi, CloudNativePG, KEDA,
Prometheus Operator): the schemas vendored in schemas/ (crd_schemas.py).
"""

from __future__ import annotations

import copy
import importlib
from types import ModuleType
from typing import Any

import pytest

# No type information ships with kubernetes-validate (no stubs, no py.typed): use it as Any.
kubernetes_validate: Any = importlib.import_module("kubernetes_validate")

Manifest = dict[str, Any]
OVERLAYS = ("dev", "prod", "prod-keda")
# Oldest supported (HPA v2, PDB v1, seccompProfile, sleep-free preStop all fine) and newest.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


def _builtin(obj: Manifest, crd_schemas: ModuleType) -> bool:
    return (obj["apiVersion"], obj["kind"]) not in crd_schemas.known_custom_resources()


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_builtin_objects_valid(
    overlay: str, version: str, rendered: dict[str, list[Manifest]], crd_schemas: ModuleType
) -> None:
    failures = []
    for obj in rendered[overlay]:
        if not _builtin(obj, crd_schemas):
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            failures.append(f"{obj['apiVersion']} {obj['kind']}: no schema (unknown kind?)")
        except kubernetes_validate.ValidationError as exc:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_valid(
    overlay: str, rendered: dict[str, list[Manifest]], crd_schemas: ModuleType
) -> None:
    failures = []
    for obj in rendered[overlay]:
        if _builtin(obj, crd_schemas):
            continue
        for line in crd_schemas.errors(obj):
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {line}")
    assert not failures, "\n".join(failures)


def test_every_custom_resource_kind_is_exercised(
    rendered: dict[str, list[Manifest]], crd_schemas: ModuleType
) -> None:
    used = {(o["apiVersion"], o["kind"]) for objs in rendered.values() for o in objs}
    assert crd_schemas.known_custom_resources() <= used


def _find(objects: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    for obj in objects:
        if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name):
            return copy.deepcopy(obj)
    raise AssertionError(f"no {kind} {name or ''}")


def test_validators_reject_broken_objects(
    rendered: dict[str, list[Manifest]], crd_schemas: ModuleType
) -> None:
    """The checks above would catch a typo or a wrong type (they are not vacuous)."""
    prod = rendered["prod-keda"]

    deployment = _find(prod, "Deployment", "ingest")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)

    broken: list[tuple[Manifest, str]] = []
    topic = _find(prod, "KafkaTopic")
    topic["spec"]["partition"] = 3
    broken.append((topic, "misspelt spec.partition"))
    cluster = _find(prod, "Cluster")
    cluster["spec"]["postgresql"]["parameters"]["max_connections"] = 400
    broken.append((cluster, "integer GUC value"))
    kafka = _find(prod, "Kafka")
    kafka["spec"]["kafka"]["listeners"][0]["port"] = 9404
    broken.append((kafka, "reserved listener port"))
    pool = _find(prod, "KafkaNodePool")
    pool["spec"]["roles"] = ["zookeeper"]
    broken.append((pool, "unknown role"))
    monitor = _find(prod, "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["relabelings"][0]["action"] = "dropall"
    broken.append((monitor, "unknown relabel action"))
    rule = _find(prod, "PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["severity"] = "critical"
    broken.append((rule, "severity outside labels"))
    scaled = _find(prod, "ScaledObject")
    scaled["spec"]["maxReplicas"] = 3
    broken.append((scaled, "HPA field name in a ScaledObject"))
    for obj, what in broken:
        assert crd_schemas.errors(obj), f"{obj['kind']} with {what} passed validation"
