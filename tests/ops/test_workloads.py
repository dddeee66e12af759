"""Every workload of every overlay: probes, requests/limits, non-root, read-only root filesystem,
no privilege escalation; and the streamrec services wired as the conventions say."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

Manifest = dict[str, Any]
OVERLAYS = ("dev", "prod", "prod-keda")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
SERVICES = {"ingest": 8000, "recommender": 8001, "trainer": 8002, "stream-processor": 8003}
USES_API_KEYS = ("ingest", "recommender", "trainer")
USES_POSTGRES = ("ingest", "recommender", "trainer")
ARTIFACTS_DIR = "/var/lib/streamrec/artifacts"

_UNITS = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_UNITS.update({"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40})


def quantity(value: object) -> float:
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value))
    assert match, f"not a quantity: {value!r}"
    return float(match.group(1)) * _UNITS[match.group(2)]


def pod_spec(obj: Manifest) -> dict[str, Any]:
    if obj["kind"] == "CronJob":
        spec: dict[str, Any] = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        return spec
    spec = obj["spec"]["template"]["spec"]
    return spec


def workloads(objects: list[Manifest]) -> Iterator[Manifest]:
    return (o for o in objects if o["kind"] in WORKLOAD_KINDS)


def all_workloads(rendered: dict[str, list[Manifest]]) -> Iterator[tuple[str, Manifest]]:
    for overlay in OVERLAYS:
        for obj in workloads(rendered[overlay]):
            yield overlay, obj


def find(objects: list[Manifest], kind: str, name: str) -> Manifest:
    hits = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(hits) == 1, f"{kind}/{name}: {len(hits)} found"
    return hits[0]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env", [])}


def test_there_are_workloads(rendered: dict[str, list[Manifest]]) -> None:
    for overlay in OVERLAYS:
        names = {o["metadata"]["name"] for o in workloads(rendered[overlay])}
        assert set(SERVICES) <= names, overlay


def test_resources_requests_and_limits(rendered: dict[str, list[Manifest]]) -> None:
    for overlay, obj in all_workloads(rendered):
        spec = pod_spec(obj)
        for c in spec["containers"] + spec.get("initContainers", []):
            where = f"{overlay} {obj['kind']}/{obj['metadata']['name']}/{c['name']}"
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    assert resource in res.get(part, {}), f"{where}: no {part}.{resource}"
            for resource in ("cpu", "memory"):
                assert quantity(res["limits"][resource]) >= quantity(res["requests"][resource]), (
                    f"{where}: {resource} limit below request"
                )


def test_security_context(rendered: dict[str, list[Manifest]]) -> None:
    """Non-root, read-only root filesystem, no privilege escalation, no capabilities, seccomp:
    the "restricted" Pod Security Standard."""
    for overlay, obj in all_workloads(rendered):
        spec = pod_spec(obj)
        pod_sc = spec.get("securityContext", {})
        for c in spec["containers"] + spec.get("initContainers", []):
            where = f"{overlay} {obj['kind']}/{obj['metadata']['name']}/{c['name']}"
            sc = c.get("securityContext", {})
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
            assert isinstance(uid, int), f"{where}: numeric runAsUser"
            assert uid > 0, f"{where}: non-zero runAsUser"
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("privileged", False) is False, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", where
        assert not spec.get("hostNetwork"), obj["metadata"]["name"]
        assert not spec.get("hostPID"), obj["metadata"]["name"]
        assert spec.get("automountServiceAccountToken") is False, obj["metadata"]["name"]


def test_probes(rendered: dict[str, list[Manifest]]) -> None:
    for overlay, obj in all_workloads(rendered):
        if obj["kind"] in ("Job", "CronJob"):
            continue
        for c in pod_spec(obj)["containers"]:
            where = f"{overlay} {obj['metadata']['name']}/{c['name']}"
            assert "readinessProbe" in c, f"{where}: no readiness probe"
            assert "livenessProbe" in c, f"{where}: no liveness probe"


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_probes_and_port(
    overlay: str, service: str, rendered: dict[str, list[Manifest]]
) -> None:
    deployment = find(rendered[overlay], "Deployment", service)
    (container,) = pod_spec(deployment)["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": SERVICES[service]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    config = find(rendered[overlay], "ConfigMap", f"{service}-config")["data"]
    assert config["STREAMREC_HTTP__PORT"] == str(SERVICES[service])
    assert config["STREAMREC_HTTP__HOST"] == "0.0.0.0"


def test_writable_paths_are_volumes(rendered: dict[str, list[Manifest]]) -> None:
    """The root filesystem is read-only: /tmp (and every data dir) is a mounted volume, and
    every mount names a volume of the pod."""
    for overlay, obj in all_workloads(rendered):
        spec = pod_spec(obj)
        volumes = {v["name"] for v in spec.get("volumes", [])}
        claims = {t["metadata"]["name"] for t in obj["spec"].get("volumeClaimTemplates", [])}
        for c in spec["containers"]:
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            where = f"{overlay} {obj['metadata']['name']}/{c['name']}"
            assert "/tmp" in mounts, f"{where}: /tmp not mounted"
            for path, name in mounts.items():
                assert name in volumes | claims, f"{where}: {path} mounts unknown volume {name}"


def test_artifact_cache_on_the_artifacts_volume(rendered: dict[str, list[Manifest]]) -> None:
    """Where models come from s3:// (prod), the recommender and the processor keep their
    downloaded versions on the artifacts emptyDir, not on their small /tmp."""
    for overlay in OVERLAYS:
        config = find(rendered[overlay], "ConfigMap", "streamrec-common")["data"]
        if not config["STREAMREC_ARTIFACTS__URI"].startswith("s3://"):
            continue
        cache = config["STREAMREC_ARTIFACTS__CACHE_DIR"]
        for service in ("recommender", "stream-processor"):
            spec = pod_spec(find(rendered[overlay], "Deployment", service))
            mounts = {m["mountPath"]: m["name"] for m in spec["containers"][0]["volumeMounts"]}
            base = max((p for p in mounts if cache.startswith(p + "/")), key=len)
            volume = next(v for v in spec["volumes"] if v["name"] == mounts[base])
            assert "emptyDir" in volume, f"{overlay} {service}: {cache} not on an emptyDir"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_pinned(overlay: str, rendered: dict[str, list[Manifest]]) -> None:
    for obj in workloads(rendered[overlay]):
        for c in pod_spec(obj)["containers"] + pod_spec(obj).get("initContainers", []):
            image = c["image"]
            tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
            pinned = (tag and tag != "latest") or "@sha256:" in image
            assert pinned, f"{overlay}: {image} not pinned"
    for service in SERVICES:
        image = pod_spec(find(rendered[overlay], "Deployment", service))["containers"][0]["image"]
        if overlay == "dev":
            assert image == f"streamrec/{service}:dev"
        else:
            assert re.fullmatch(rf"[\w.-]+(:\d+)?/[\w/.-]*{service}:\d+\.\d+\.\d+", image), image


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_and_secrets_wiring(overlay: str, rendered: dict[str, list[Manifest]]) -> None:
    """Each service reads the shared and its own ConfigMap; API keys come from a Secret
    (STREAMREC_AUTH__API_KEYS); the Postgres DSN from the CloudNativePG-style app Secret."""
    for service in SERVICES:
        deployment = find(rendered[overlay], "Deployment", service)
        container = pod_spec(deployment)["containers"][0]
        config_maps = [
            e["configMapRef"]["name"] for e in container["envFrom"] if "configMapRef" in e
        ]
        assert config_maps == ["streamrec-common", f"{service}-config"]
        env = env_of(container)
        if service in USES_API_KEYS:
            ref = env["STREAMREC_AUTH__API_KEYS"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "streamrec-api-keys", "key": "STREAMREC_AUTH__API_KEYS"}
        else:
            assert "STREAMREC_AUTH__API_KEYS" not in env
        if service in USES_POSTGRES:
            ref = env["STREAMREC_POSTGRES__DSN"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "streamrec-pg-app", "key": "uri"}
        for e in env.values():
            assert "value" not in e or not re.search(r"(?i)password|secret", e["name"]), e


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_trainer(overlay: str, rendered: dict[str, list[Manifest]]) -> None:
    trainer = find(rendered[overlay], "Deployment", "trainer")
    assert trainer["spec"]["replicas"] == 1
    assert trainer["spec"]["strategy"] == {"type": "Recreate"}
    container = pod_spec(trainer)["containers"][0]
    assert env_of(container)["OPENBLAS_NUM_THREADS"]["value"] == "1"
    volumes = {v["name"]: v for v in pod_spec(trainer)["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    artifacts = volumes[mounts[ARTIFACTS_DIR]]
    uri = find(rendered[overlay], "ConfigMap", "streamrec-common")["data"][
        "STREAMREC_ARTIFACTS__URI"
    ]
    if overlay == "dev":
        assert uri == f"file://{ARTIFACTS_DIR}"
        claim = artifacts["persistentVolumeClaim"]["claimName"]
        find(rendered[overlay], "PersistentVolumeClaim", claim)
    else:
        assert uri.startswith("s3://")
        secrets = [e["secretRef"]["name"] for e in container["envFrom"] if "secretRef" in e]
        assert secrets == ["streamrec-artifacts-s3"]
    assert not any(
        o["kind"] == "HorizontalPodAutoscaler" and o["spec"]["scaleTargetRef"]["name"] == "trainer"
        for o in rendered[overlay]
    )


def test_dev_artifact_readers_mount_read_only(rendered: dict[str, list[Manifest]]) -> None:
    for service in ("recommender", "stream-processor"):
        spec = pod_spec(find(rendered["dev"], "Deployment", service))
        mount = next(
            m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == ARTIFACTS_DIR
        )
        assert mount.get("readOnly") is True
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        assert volume["persistentVolumeClaim"] == {
            "claimName": "streamrec-artifacts",
            "readOnly": True,
        }


def test_graceful_shutdown(rendered: dict[str, list[Manifest]]) -> None:
    """API pods stay in rotation a moment after SIGTERM; workers get time to commit offsets."""
    for overlay in OVERLAYS:
        for service in SERVICES:
            spec = pod_spec(find(rendered[overlay], "Deployment", service))
            assert spec["terminationGracePeriodSeconds"] >= 30
            if service in ("ingest", "recommender"):
                assert "preStop" in spec["containers"][0]["lifecycle"]
