"""The client's answer models agree with the OpenAPI document the services publish: every
field a response schema declares is a field of the client's model, with the same JSON type."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from streamrec_client import models
from streamrec_ingest.app import create_app

from ..ingest.fakes import FakeProducer, unit_settings


def _schema_of(openapi: dict[str, Any], name: str) -> dict[str, Any]:
    schema: dict[str, Any] = openapi["components"]["schemas"][name]
    return schema


@pytest.fixture(scope="module")
def ingest_openapi() -> dict[str, Any]:
    return create_app(unit_settings(), producer=FakeProducer()).openapi()


@pytest.mark.parametrize(
    "model",
    [models.EventsAccepted, models.ProductsAccepted, models.UserAccepted, models.OrderAccepted],
    ids=lambda m: m.__name__,
)
def test_ingest_answers(ingest_openapi: dict[str, Any], model: type[BaseModel]) -> None:
    published = _schema_of(ingest_openapi, model.__name__)
    ours = model.model_json_schema()
    assert set(published["properties"]) == set(ours["properties"])
    assert set(published.get("required", [])) <= set(ours.get("required", []))
    for name, prop in published["properties"].items():
        assert prop.get("type") == ours["properties"][name].get("type"), name
