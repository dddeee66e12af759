"""Response bodies of the streamrec HTTP API, as pydantic models.

Unknown fields are kept (``extra="allow"``), so a newer server never breaks an older client.
Each body also reads like the JSON object it came from (``body["field"]``, ``body.get("field",
default)``, ``"field" in body``, ``set(body)``: the fields the server sent), for code written
against the earlier dict-returning client; ``model_dump()`` gives the plain dict.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict


class Body(BaseModel):
    """Base of every response model: extra fields allowed, subscript access to fields."""

    model_config = ConfigDict(extra="allow", frozen=True)

    def __getitem__(self, name: str) -> Any:
        try:
            return getattr(self, name)
        except AttributeError:
            raise KeyError(name) from None

    def get(self, name: str, default: Any = None) -> Any:
        """The field's value, or ``default`` when the server did not send it (or sent null)."""
        value = getattr(self, name, None) if name in self.keys() else None
        return default if value is None else value

    def keys(self) -> list[str]:
        """The fields the server sent, declared ones first."""
        sent = [name for name in type(self).model_fields if name in self.model_fields_set]
        return sent + list(self.model_extra or {})

    def __iter__(self) -> Iterator[str]:  # type: ignore[override]
        return iter(self.keys())

    def __contains__(self, name: object) -> bool:
        return name in self.keys()

    def __len__(self) -> int:
        return len(self.keys())


class EventsAccepted(Body):
    """``202`` of ``POST /v1/events``: the event ids in request order; ``unknown_product_ids``
    the product ids the catalog never described (None from a worker without the catalog)."""

    accepted: int
    event_ids: list[str]
    unknown_product_ids: list[str] | None = None


class ProductsAccepted(Body):
    """``202`` of ``PUT/POST/DELETE /v1/products``."""

    accepted: int
    product_ids: list[str]


class UserAccepted(Body):
    """``202`` of ``PUT /v1/users/{user_id}``."""

    accepted: int
    user_id: str


class OrderAccepted(Body):
    """``202`` of ``POST /v1/orders``; ``replayed`` when the order_id was already stored."""

    accepted: int
    order_id: str
    event_ids: list[str]
    replayed: bool


class ScoredItem(Body):
    product_id: str
    score: float


class Experiment(Body):
    name: str
    variant: str | None


class Recommendations(Body):
    """``GET /v1/recommendations/{user_id}``; ``rec_id`` goes back in feedback events."""

    user_id: str
    rec_id: str | None = None
    algorithm: str
    strategy: str | None = None
    model_version: int | None = None
    items: list[ScoredItem]
    segment: str | None = None
    cached: bool = False
    experiment: Experiment | None = None
    latency_ms: float | None = None


class WeightedItem(Body):
    product_id: str
    weight: float


class UserProfile(Body):
    """``GET /v1/users/{user_id}/profile``: the live profile the stream processor keeps."""

    user_id: str
    event_count: int
    segment: str
    purchase_history: list[str]
    view_history: list[str]
    recent_items: list[WeightedItem]
    category_affinity: dict[str, float]
    counts: dict[str, int]
    attributes: dict[str, Any]
    first_event_ts: float | None = None
    last_event_ts: float | None = None
    vector_model_version: int | None = None
    in_model: bool = False


class TrainAccepted(Body):
    """``202`` of ``POST /v1/train``."""

    job_id: str


class TrainJob(Body):
    """``GET /v1/train/{job_id}``: ``status`` queued|running|published|rejected|failed."""

    job_id: str
    status: str
    reason: str | None = None
    params: dict[str, Any] | None = None
    model_version: int | None = None
    metrics: dict[str, Any] | None = None
    error: str | None = None
    created_at: str | None = None
    updated_at: str | None = None

    @property
    def finished(self) -> bool:
        return self.status not in ("queued", "running")
