"""The client's answer models agree with the OpenAPI document the services publish: every
field a response schema declares is a field of the client's model, with the same JSON type.

The client keeps its own models (it installs without the services, so it cannot import their
schemas, and its models are lenient: extra fields kept, fields a newer server may leave out
optional); these tests are what keeps the two definitions of each body in step."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from streamrec_client import models
from streamrec_ingest.app import create_app
from streamrec_recommender.api.app import create_app as recommender_app

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


def _types(prop: dict[str, Any]) -> set[str]:
    """The JSON types a property allows ("any" for an unconstrained one)."""
    if "anyOf" in prop:
        return set().union(*(_types(p) for p in prop["anyOf"]))
    if "$ref" in prop:
        return {"object"}
    return {prop["type"]} if "type" in prop else {"any"}


@pytest.fixture(scope="module")
def recommender_openapi() -> dict[str, Any]:
    return recommender_app().openapi()


@pytest.mark.parametrize(
    ("published_name", "model"),
    [
        ("Recommendation", models.Recommendations),
        ("ScoredItem", models.ScoredItem),
        ("ExperimentTag", models.Experiment),
        ("Profile", models.UserProfile),
        ("WeightedItem", models.WeightedItem),
    ],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_recommender_answers(
    recommender_openapi: dict[str, Any], published_name: str, model: type[BaseModel]
) -> None:
    """Every field the recommender may send is a field of the client's model that accepts each
    JSON type the server may send there (null included); the server always sends what the
    client requires."""
    published = _schema_of(recommender_openapi, published_name)
    ours = model.model_json_schema()
    assert set(published["properties"]) == set(ours["properties"])
    assert set(ours.get("required", [])) <= set(published.get("required", []))
    for name, prop in published["properties"].items():
        accepted = _types(ours["properties"][name])
        assert "any" in accepted or _types(prop) <= accepted, (name, prop, accepted)
