"""Fixtures for the operations tests: rendered overlays, schemas, metric catalogue.

Overlays are rendered by the real kustomize (``kubectl kustomize``, kubectl from the PyPI wheel
of AWS's kubectl Lambda layer: see tools.py). The helper modules next to this file (tools,
crd_schemas, promql_names) are loaded by path under a private package name, so they need no
change to sys.path; tests reach them through the fixtures below.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("dev", "prod", "prod-keda")

Manifest = dict[str, Any]


def _load(name: str) -> ModuleType:
    qualified = f"_streamrec_ops.{name}"
    if qualified in sys.modules:
        return sys.modules[qualified]
    spec = importlib.util.spec_from_file_location(qualified, HERE / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tools() -> ModuleType:
    return _load("tools")


@pytest.fixture(scope="session")
def crd_schemas() -> ModuleType:
    return _load("crd_schemas")


@pytest.fixture(scope="session")
def promql_names() -> ModuleType:
    return _load("promql_names")


@pytest.fixture(scope="session")
def kubectl(tools: ModuleType) -> str:
    found: str = tools.layer_tool("kubectl")
    return found


@pytest.fixture(scope="session")
def render(kubectl: str) -> Callable[[Path], list[Manifest]]:
    """``kubectl kustomize <dir>`` (kustomize v5.6), parsed."""

    def build(directory: Path) -> list[Manifest]:
        result = subprocess.run(
            [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, f"kustomize {directory}:\n{result.stderr}"
        return [o for o in yaml.safe_load_all(result.stdout) if o]

    return build


@pytest.fixture(scope="session")
def rendered(render: Callable[[Path], list[Manifest]]) -> dict[str, list[Manifest]]:
    """Every overlay, rendered: overlay name -> objects."""
    return {name: render(K8S / "overlays" / name) for name in OVERLAYS}


@pytest.fixture(scope="session")
def metric_catalog(promql_names: ModuleType) -> dict[str, Any]:
    catalog: dict[str, Any] = promql_names.streamrec_series()
    assert catalog, "no streamrec metrics found in the prometheus_client registry"
    return catalog
