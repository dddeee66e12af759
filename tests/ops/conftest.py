"""Fixtures for the operations tests: rendered overlays, schemas, metric catalogue. All offline.

The helper modules next to this file (kustomize_lite, crd_schemas, promql_names) are loaded by
path under a private package name, so they need no change to sys.path; tests reach them
through the fixtures below.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

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
def kustomize_lite() -> ModuleType:
    return _load("kustomize_lite")


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
def render(kustomize_lite: ModuleType) -> Callable[[Path], list[Manifest]]:
    build: Callable[[Path], list[Manifest]] = kustomize_lite.build
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
