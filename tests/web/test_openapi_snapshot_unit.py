"""The web app's API types are generated from ``services/web/openapi/*.json``: those documents
must be the services' own, so a changed route or response model is a failing test here (run
``uv run python services/web/scripts/dump_openapi.py`` and commit), not a silently stale client."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streamrec_ingest.app import create_app as ingest_app
from streamrec_recommender.api.app import create_app as recommender_app
from streamrec_trainer.app import create_app as trainer_app

OPENAPI = Path(__file__).resolve().parents[2] / "services" / "web" / "openapi"
FACTORIES: dict[str, Callable[[], Any]] = {
    "ingest": ingest_app,
    "recommender": recommender_app,
    "trainer": trainer_app,
}


@pytest.mark.parametrize("service", sorted(FACTORIES))
def test_checked_in_openapi_is_the_services_own(service: str) -> None:
    live = json.loads(json.dumps(FACTORIES[service]().openapi()))
    stored = json.loads((OPENAPI / f"{service}.json").read_text())
    assert stored == live, (
        f"services/web/openapi/{service}.json is stale: "
        "run `uv run python services/web/scripts/dump_openapi.py` and commit"
    )


def test_every_protected_route_declares_the_key() -> None:
    """Swagger's "Try it out" sends X-API-Key only where a route declares the scheme."""
    for service, factory in FACTORIES.items():
        doc = factory().openapi()
        assert "ApiKey" in doc["components"]["securitySchemes"], service
        for path, methods in doc["paths"].items():
            for method, op in methods.items():
                if "401" in op.get("responses", {}):
                    assert op.get("security"), f"{service} {method.upper()} {path}"
