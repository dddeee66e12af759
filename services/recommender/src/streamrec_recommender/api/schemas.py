"""Response bodies of the read API, for the OpenAPI document, generated clients and the
schema-conformance fuzz (``tests/system/test_fuzz_openapi.py``).

The routes render their bodies with orjson straight into a ``Response`` (a tenth of the CPU of
validating through these models on every request); these models document that shape and the
fuzz checks live answers against them, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from streamrec_shared.http import error_responses


class ScoredItem(BaseModel):
    product_id: str
    score: float


class ExperimentTag(BaseModel):
    name: str
    variant: str | None


class Recommendation(BaseModel):
    """``GET /v1/recommendations/{user_id}``: ``strategy`` says how the items were found (the
    cold-start tier, the recent-items tier, the policy's choice, or ``degraded:...``); send
    ``rec_id`` back with the events the shopper makes on these items."""

    user_id: str
    rec_id: str
    algorithm: str
    strategy: str
    model_version: int | None
    items: list[ScoredItem]
    segment: str
    cached: bool
    experiment: ExperimentTag | None = None
    latency_ms: float

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "user_id": "u00001",
                    "rec_id": "rmb2k1x3.ah.1f2e3d4c",
                    "algorithm": "als",
                    "strategy": "personal",
                    "model_version": 3,
                    "items": [{"product_id": "p000123", "score": 0.91}],
                    "segment": "heavy",
                    "cached": False,
                    "latency_ms": 1.2,
                }
            ]
        }
    }


class BatchRecommendations(BaseModel):
    results: list[Recommendation]
    latency_ms: float


class Similar(BaseModel):
    product_id: str
    strategy: str
    model_version: int
    items: list[ScoredItem]
    latency_ms: float


class Trending(BaseModel):
    category: str | None
    strategy: str
    items: list[ScoredItem]
    latency_ms: float


class WeightedItem(BaseModel):
    product_id: str
    weight: float


class Profile(BaseModel):
    """What serving knows about a user (personal data: a key with the reader scope or above)."""

    user_id: str
    event_count: int
    segment: str
    purchase_history: list[str]
    view_history: list[str]
    recent_items: list[WeightedItem]
    category_affinity: dict[str, float]
    counts: dict[str, int]
    attributes: dict[str, Any]
    first_event_ts: float | None
    last_event_ts: float | None
    vector_model_version: int | None
    in_model: bool


class VariantOut(BaseModel):
    name: str
    algorithm: str
    weight: float


class ExperimentOut(BaseModel):
    name: str
    status: str
    description: str
    variants: list[VariantOut]
    control: str | None


class CampaignOut(BaseModel):
    name: str
    boost: float
    start: float
    end: float
    product_ids: list[str]
    categories: list[str]
    segment: str | None
    enabled: bool


class CampaignList(BaseModel):
    campaigns: list[CampaignOut]


class Deleted(BaseModel):
    deleted: str


class OnlineMetrics(BaseModel):
    """Impressions, clicks, CTR, hit and conversion rates per algorithm, segment and variant,
    each variant's significance against its control, and the bandit's state."""

    window_s: int
    bandit: dict[str, Any]

    model_config = {"extra": "allow"}


def ok(model: type[BaseModel], *errors: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route: its 200 body and its error answers (``ErrorBody``)."""
    return {200: {"model": model, "description": "OK"}, **error_responses(*errors)}
