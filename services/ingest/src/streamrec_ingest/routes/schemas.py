"""Response bodies of the write API, for the OpenAPI document (the Python client mirrors them
in ``streamrec_client.models``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from streamrec_shared import http


class EventsAccepted(BaseModel):
    """202 for ``POST /v1/events``: every listed event was acknowledged by the broker."""

    accepted: int
    event_ids: list[str]
    unknown_product_ids: list[str] | None = Field(
        default=None,
        description="product ids of the request the catalog has never described (the events "
        "are accepted); null while this worker has not loaded the catalog",
    )


class UserErasedBody(BaseModel):
    """202 for ``DELETE /v1/users/{user_id}``: rows changed in Postgres, the erasure record
    published on ``users.v1``."""

    erased: bool
    user_id: str
    orders_anonymised: int
    interactions_deleted: int
    users_deleted: int


class ProductsAccepted(BaseModel):
    accepted: int
    product_ids: list[str]


class UserAccepted(BaseModel):
    accepted: int
    user_id: str


class OrderAccepted(BaseModel):
    """202 for ``POST /v1/orders``; ``replayed`` when the order had been stored by a retry."""

    accepted: int
    order_id: str
    event_ids: list[str]
    replayed: bool


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The shared error responses, with the gateway's meaning of a 503."""
    return http.error_responses(
        *codes,
        descriptions={503: "broker or database unavailable; nothing acknowledged (Retry-After)"},
    )
