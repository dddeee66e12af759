"""The v1 event contract: what clients send, and what travels on the topics.

Inbound models (``*In``) are what the HTTP API accepts: optional ``event_id`` and ``timestamp``,
integer ids accepted and kept as decimal strings. Records are what is published: every field
resolved (``event_id`` generated, ``timestamp`` tz-aware, ``received_at`` stamped by ingest),
frozen, ``extra="forbid"``, with a ``kind`` discriminator and ``schema_version``.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

SCHEMA_VERSION = 1
MAX_BATCH = 1000
MAX_CONTEXT_BYTES = 4096
MAX_ATTRIBUTES_BYTES = 16384

EventType = Literal["view", "click", "add_to_cart", "remove_from_cart", "purchase", "rating"]
EVENT_TYPES: tuple[EventType, ...] = (
    "view",
    "click",
    "add_to_cart",
    "remove_from_cart",
    "purchase",
    "rating",
)


def _id_from_int(value: Any) -> Any:
    """JSON integers are accepted as ids and kept as their decimal string; bools are not ids."""
    if isinstance(value, bool):
        raise ValueError("must be a string or an integer, not a boolean")
    if isinstance(value, int):
        return str(value)
    return value


def _timestamp(value: Any) -> Any:
    """Unix seconds (int or float) become UTC datetimes; strings are parsed as ISO-8601."""
    if isinstance(value, bool):
        raise ValueError("must be unix seconds or an ISO-8601 string")
    if isinstance(value, int | float):
        if not 0 <= value < 32503680000:  # year 3000
            raise ValueError("unix seconds out of range")
        return datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("not an ISO-8601 timestamp or unix seconds") from None
        if parsed.tzinfo is None:
            raise ValueError("ISO-8601 timestamp needs a timezone offset (e.g. Z or +01:00)")
        return parsed
    return value


Id = Annotated[
    str,
    BeforeValidator(_id_from_int),
    Field(min_length=1, max_length=128, pattern=r"^[^\s\x00-\x1f]+$"),
]
EventId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")]
Timestamp = Annotated[AwareDatetime, BeforeValidator(_timestamp)]
ShortText = Annotated[str, Field(max_length=128)]


def _bounded_json(limit: int, field: str) -> Any:
    def check(value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(json.dumps(value, separators=(",", ":"))) > limit:
            raise ValueError(f"{field} must be at most {limit} bytes as JSON")
        return value

    return check


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)


class EventIn(_Frozen):
    """One user event as posted to ``POST /v1/events``."""

    event_id: EventId | None = None
    user_id: Id
    event_type: EventType
    product_id: Id
    timestamp: Timestamp | None = None
    value: float | None = Field(default=None, allow_inf_nan=False)
    price: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    session_id: ShortText | None = None
    rec_id: Annotated[str, Field(max_length=64)] | None = None
    context: dict[str, Any] | None = None

    _context_size = field_validator("context")(_bounded_json(MAX_CONTEXT_BYTES, "context"))

    @field_validator("value")
    @classmethod
    def _value_range(cls, value: float | None) -> float | None:
        if value is not None and value < 0:
            raise ValueError("must be >= 0")
        return value

    @model_validator(mode="after")
    def _rating_value(self) -> EventIn:
        if self.event_type == "rating" and (self.value is None or not 1 <= self.value <= 5):
            raise PydanticCustomError(
                "rating_value", "value: a rating event needs value between 1 and 5"
            )
        return self

    def to_record(self, received_at: datetime) -> UserEvent:
        """Resolve defaults: generated event_id, receive time as event time when absent."""
        return UserEvent(
            event_id=self.event_id or uuid.uuid4().hex,
            user_id=self.user_id,
            event_type=self.event_type,
            product_id=self.product_id,
            timestamp=self.timestamp or received_at,
            received_at=received_at,
            value=self.value,
            price=self.price,
            session_id=self.session_id,
            rec_id=self.rec_id,
            context=self.context,
        )


class EventBatchIn(_Frozen):
    """``{"events": [...]}`` with 1..1000 events."""

    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


class UserEvent(_Frozen):
    """An accepted event on ``events.v1`` (key: user_id)."""

    kind: Literal["event"] = "event"
    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: EventId
    user_id: Id
    event_type: EventType
    product_id: Id
    timestamp: AwareDatetime
    received_at: AwareDatetime
    value: float | None = None
    price: float | None = None
    session_id: str | None = None
    rec_id: str | None = None
    context: dict[str, Any] | None = None


class ProductIn(_Frozen):
    """Body of ``PUT /v1/products/{product_id}``."""

    name: Annotated[str, Field(min_length=1, max_length=512)]
    category: Annotated[str, Field(min_length=1, max_length=128)]
    price: float = Field(ge=0, allow_inf_nan=False)
    in_stock: bool = True
    active: bool = True
    attributes: dict[str, Any] = Field(default_factory=dict)
    description: Annotated[str, Field(max_length=8192)] = ""

    _attributes_size = field_validator("attributes")(
        _bounded_json(MAX_ATTRIBUTES_BYTES, "attributes")
    )


class ProductBatchItem(ProductIn):
    product_id: Id


class ProductBatchIn(_Frozen):
    products: list[ProductBatchItem] = Field(min_length=1, max_length=MAX_BATCH)


class ProductRecord(_Frozen):
    """Latest state of a product on ``catalog.v1`` (key: product_id, compacted)."""

    kind: Literal["product"] = "product"
    schema_version: Literal[1] = SCHEMA_VERSION
    product_id: Id
    name: str
    category: str
    price: float
    in_stock: bool = True
    active: bool = True
    attributes: dict[str, Any] = Field(default_factory=dict)
    description: str = ""
    updated_at: AwareDatetime


class UserIn(_Frozen):
    """Body of ``PUT /v1/users/{user_id}``."""

    attributes: dict[str, Any] = Field(default_factory=dict)

    _attributes_size = field_validator("attributes")(
        _bounded_json(MAX_ATTRIBUTES_BYTES, "attributes")
    )


class UserRecord(_Frozen):
    """Latest attributes of a user on ``users.v1`` (key: user_id, compacted)."""

    kind: Literal["user"] = "user"
    schema_version: Literal[1] = SCHEMA_VERSION
    user_id: Id
    attributes: dict[str, Any]
    updated_at: AwareDatetime


class OrderItemIn(_Frozen):
    product_id: Id
    quantity: int = Field(ge=1, le=100000)
    price: float = Field(ge=0, allow_inf_nan=False)


class OrderIn(_Frozen):
    """Body of ``POST /v1/orders``: stored as an order and emitted as one purchase per item."""

    order_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")]
    user_id: Id
    items: list[OrderItemIn] = Field(min_length=1, max_length=MAX_BATCH)
    timestamp: Timestamp | None = None


class ModelAnnouncement(_Frozen):
    """A model version made active, on ``models.v1``."""

    kind: Literal["model"] = "model"
    schema_version: Literal[1] = SCHEMA_VERSION
    version: int = Field(ge=1)
    artifact_uri: str
    activated_at: AwareDatetime


CatalogRecord = Annotated[ProductRecord, Field(discriminator="kind")]
USER_EVENT = TypeAdapter(UserEvent)


def encode(record: BaseModel) -> bytes:
    """Serialise a record for Kafka: compact JSON, UTF-8."""
    return record.model_dump_json(exclude_none=True).encode()


def decode_event(raw: bytes) -> UserEvent:
    """Parse an ``events.v1`` value; raises ``pydantic.ValidationError`` on poison input."""
    return UserEvent.model_validate_json(raw)
