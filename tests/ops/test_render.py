"""Every overlay renders; the renderer agrees with real kustomize; no manifest is orphaned."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

Manifest = dict[str, Any]
K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
OVERLAYS = ("dev", "prod", "prod-keda")
NAMESPACES = {"dev": "streamrec-dev", "prod": "streamrec", "prod-keda": "streamrec"}
# Files under deploy/k8s that are not kustomize inputs.
NOT_MANIFESTS = {K8S / "components" / "monitoring" / "prometheus-adapter-values.yaml"}


def _kustomize_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_into_its_namespace(
    overlay: str, rendered: dict[str, list[Manifest]]
) -> None:
    objects = rendered[overlay]
    assert len(objects) > 20
    namespace = NAMESPACES[overlay]
    for obj in objects:
        meta = obj["metadata"]
        if obj["kind"] == "Namespace":
            assert meta["name"] == namespace
        else:
            assert meta.get("namespace") == namespace, (obj["kind"], meta["name"])
        assert meta["labels"]["app.kubernetes.io/instance"] in ("streamrec", "streamrec-dev")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_renderer_matches_real_kustomize(
    overlay: str, rendered: dict[str, list[Manifest]], kustomize_lite: ModuleType
) -> None:
    """kustomize_lite gives exactly what kustomize itself gives, where a binary is available."""
    command = _kustomize_command()
    if command is None:
        pytest.skip(
            "no kustomize/kubectl on PATH: overlays were rendered by kustomize_lite only "
            "(its semantics were checked against kustomize v5.5.0)"
        )
    out = subprocess.run(
        [*command, str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    real = {kustomize_lite.resource_id(o): o for o in yaml.safe_load_all(out) if o}
    ours = {kustomize_lite.resource_id(o): o for o in rendered[overlay]}
    assert set(ours) == set(real)
    for rid, obj in ours.items():
        assert obj == real[rid], rid


def _referenced_files(directory: Path, seen: set[Path]) -> None:
    text = (directory / "kustomization.yaml").read_text()
    kustomization = yaml.safe_load(text)
    seen.add(directory / "kustomization.yaml")
    entries = list(kustomization.get("resources", [])) + list(kustomization.get("components", []))
    entries += [p["path"] for p in kustomization.get("patches", []) if "path" in p]
    for generator in kustomization.get("configMapGenerator", []):
        entries += [f.rpartition("=")[2] for f in generator.get("files", [])]
    for entry in entries:
        path = (directory / entry).resolve()
        if path.is_dir():
            _referenced_files(path, seen)
        else:
            seen.add(path)


def test_every_manifest_is_used_by_an_overlay() -> None:
    seen: set[Path] = set()
    for overlay in OVERLAYS:
        _referenced_files(K8S / "overlays" / overlay, seen)
    files = {
        p.resolve()
        for p in K8S.rglob("*")
        if p.suffix in (".yaml", ".yml", ".json") and p.is_file()
    }
    orphans = files - seen - NOT_MANIFESTS
    assert not orphans, f"not referenced by any overlay: {sorted(map(str, orphans))}"


def _write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)
    return directory


DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      containers:
      - name: c
        image: streamrec/web
        env: [{name: A, value: "1"}, {name: B, value: "2"}]
        volumeMounts: [{name: tmp, mountPath: /tmp}, {name: art, mountPath: /art}]
      volumes: [{name: tmp, emptyDir: {}}, {name: art, emptyDir: {}}]
"""


def test_renderer_strategic_merge_follows_kustomize(
    tmp_path: Path, render: Callable[[Path], list[Manifest]]
) -> None:
    """List merge order and null deletion as kustomize v5 does them (observed with v5.5.0)."""
    _write(
        tmp_path,
        {
            "deployment.yaml": DEPLOYMENT,
            "kustomization.yaml": """\
resources: [deployment.yaml]
images: [{name: streamrec/web, newName: reg/web, newTag: "1.2"}]
patches:
- patch: |-
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      template:
        spec:
          containers:
          - name: c
            env: [{name: Z, value: "9"}, {name: A, value: "0"}]
          volumes:
          - {name: art, emptyDir: null, persistentVolumeClaim: {claimName: art}}
""",
        },
    )
    (deployment,) = render(tmp_path)
    spec = deployment["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["image"] == "reg/web:1.2"
    assert container["env"] == [
        {"name": "Z", "value": "9"},
        {"name": "A", "value": "0"},
        {"name": "B", "value": "2"},
    ]
    assert spec["volumes"] == [
        {"name": "art", "persistentVolumeClaim": {"claimName": "art"}},
        {"name": "tmp", "emptyDir": {}},
    ]


@pytest.mark.parametrize(
    "kustomization",
    [
        "resources: [deployment.yaml]\ncommonLabels: {a: b}\n",
        "resources: [deployment.yaml]\nconfigMapGenerator: [{name: x, literals: [a=b]}]\n",
        "resources: [deployment.yaml]\nlabels: [{pairs: {a: b}, includeSelectors: true}]\n",
        "resources: [/etc/passwd]\n",
    ],
)
def test_renderer_refuses_what_it_does_not_implement(
    tmp_path: Path, kustomization: str, kustomize_lite: ModuleType
) -> None:
    _write(tmp_path, {"deployment.yaml": DEPLOYMENT, "kustomization.yaml": kustomization})
    with pytest.raises(kustomize_lite.KustomizeError):
        kustomize_lite.build(tmp_path)
