"""Every overlay renders with the real kustomize into its namespace; no manifest is orphaned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

Manifest = dict[str, Any]
K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
OVERLAYS = ("dev", "prod", "prod-keda")
NAMESPACES = {"dev": "streamrec-dev", "prod": "streamrec", "prod-keda": "streamrec"}
# Files under deploy/k8s that are not kustomize inputs.
NOT_MANIFESTS = {K8S / "components" / "monitoring" / "prometheus-adapter-values.yaml"}


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
