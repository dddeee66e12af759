"""The v1 event contract: what clients send, and what travels on the topics.

Inbound models (``*In``) are what the HTTP API accepts: optional ``event_id`` and ``timestamp``,
integer ids accepted and kept as decimal strings, numbers and booleans strict (``"12"`` is not a
price, ``1`` is not ``true``), unknown fields rejected, every string and object bounded.
Records are what is published: every field resolved (``event_id`` generated, ``timestamp``
tz-aware, ``received_at`` stamped by ingest), frozen, ``extra="forbid"``, with a ``kind``
discriminator and ``schema_version``. Validation messages name the rule broken, so the API can
answer ``events[3].timestamp: ISO-8601 timestamp needs a timezone offset``.

Every inbound string (ids, names, ``session_id``, ``rec_id``, the keys and values of
``context`` and ``attributes`` at any depth) must be storable as Postgres ``text``/``jsonb``:
no NUL (``\\u0000``), no unpaired surrogate; JSON objects hold no NaN/Infinity and nest at most
``MAX_JSON_DEPTH`` levels. What the archive cannot store is refused here, at the door (422
naming the field), never acknowledged and then rejected downstream.
"""

from __future__ import annotations

import json
import math
import os
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar, get_args, overload

from pydantic import (
    AfterValidator,
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

SCHEMA_VERSION: Literal[1] = 1
MAX_BATCH = 1000
MAX_CONTEXT_BYTES = 4096
MAX_ATTRIBUTES_BYTES = 16384
MAX_ID_CHARS = 128
MAX_EVENT_ID_CHARS = 64
# order_id + ":" + line number (<= 1000) must fit in an event_id
MAX_ORDER_ID_CHARS = MAX_EVENT_ID_CHARS - 8
MAX_PRICE = 1e9
MAX_ORDER_TOTAL = 1e11
# event time bounds: 1970-01-01 .. 3000-01-01 (catches milliseconds sent as seconds)
MIN_UNIX_S = 0.0
MAX_UNIX_S = 32503680000.0
MAX_JSON_DEPTH = 16

EventType = Literal["view", "click", "add_to_cart", "remove_from_cart", "purchase", "rating"]
"""THE list of event types. Append only: a type's position is its code in the trainer's
warehouse files and the index of its counter in packed profiles. Adding one: append it here,
give it a weight in ``streamrec_shared.weights.EVENT_WEIGHTS`` (a test checks every type has
one); the API enum, metrics labels, profile counters and archive codes follow."""
EVENT_TYPES: tuple[EventType, ...] = get_args(EventType)

_NO_SPACE = re.compile("^[^\\s\\x00-\\x1f\\x7f\\ud800-\\udfff]+$")
# what Postgres text and jsonb cannot hold: NUL, and unpaired surrogates (not UTF-8)
_UNSTORABLE = re.compile("[\\x00\\ud800-\\udfff]")
_UNSTORABLE_REASON = "must not contain NUL (\\u0000) or unpaired surrogates"
_EVENT_ID = re.compile(r"^[A-Za-z0-9._:\-]+$")


def _id_from_int(value: Any) -> Any:
    """JSON integers are accepted as ids and kept as their decimal string; bools are not ids."""
    if isinstance(value, bool):
        raise PydanticCustomError("id_type", "must be a string or an integer, not a boolean")
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        raise PydanticCustomError(
            "id_type", "must be a string or an integer, not {kind}", {"kind": _json_kind(value)}
        )
    return value


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return "a number with a fraction"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _id_rules(limit: int, pattern: re.Pattern[str], allowed: str) -> Any:
    def check(value: str) -> str:
        if not value:
            raise PydanticCustomError("id_empty", "must not be empty")
        if len(value) > limit:
            raise PydanticCustomError(
                "id_too_long", "must be at most {limit} characters", {"limit": limit}
            )
        if not pattern.fullmatch(value):
            raise PydanticCustomError("id_chars", allowed)
        return value

    return check


def _timestamp(value: Any) -> Any:
    """Unix seconds or a timezone-aware ISO-8601 string, as a UTC datetime."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PydanticCustomError(
            "timestamp_type", "must be unix seconds (a number) or an ISO-8601 string"
        )
    if isinstance(value, int | float):
        if not (math.isfinite(value) and MIN_UNIX_S <= value < MAX_UNIX_S):
            raise PydanticCustomError(
                "timestamp_range",
                "unix seconds out of range (1970..3000; milliseconds are not accepted)",
            )
        return datetime.fromtimestamp(value, tz=UTC)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise PydanticCustomError(
            "timestamp_format", "not an ISO-8601 timestamp or unix seconds"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise PydanticCustomError(
            "timestamp_naive", "ISO-8601 timestamp needs a timezone offset (e.g. Z or +01:00)"
        )
    if not MIN_UNIX_S <= parsed.timestamp() < MAX_UNIX_S:
        raise PydanticCustomError("timestamp_range", "timestamp out of range (1970..3000)")
    return parsed.astimezone(UTC)


def _storable_text(value: str) -> str:
    if _UNSTORABLE.search(value):
        raise PydanticCustomError("text_unstorable", _UNSTORABLE_REASON)
    return value


def _unstorable_json(
    value: Any, path: str, depth: int, max_depth: int | None = MAX_JSON_DEPTH
) -> str | None:
    """Why ``value`` (parsed JSON) cannot be stored as jsonb, prefixed with its path, or None;
    nesting deeper than ``max_depth`` counts as unstorable (None: any depth)."""
    if isinstance(value, str):
        return f"{path}: {_UNSTORABLE_REASON}" if _UNSTORABLE.search(value) else None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path}: must not be NaN or Infinity"
    if isinstance(value, dict | list):
        if max_depth is not None and depth >= max_depth:
            return f"{path}: nested deeper than {max_depth} levels"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str) and _UNSTORABLE.search(key):
                return f"{path}: key {key!r} {_UNSTORABLE_REASON}"
            where = f"{path}.{key}" if isinstance(key, str) else f"{path}[{key}]"
            found = _unstorable_json(item, where, depth + 1, max_depth)
            if found is not None:
                return found
    return None


Text = Annotated[str, AfterValidator(_storable_text)]
"""Any inbound free text: storable in Postgres (no NUL, no unpaired surrogate)."""

Id = Annotated[
    str,
    BeforeValidator(_id_from_int),
    AfterValidator(
        _id_rules(MAX_ID_CHARS, _NO_SPACE, "must not contain whitespace or control characters")
    ),
]
"""A user or product id: 1..128 characters, no whitespace or control characters."""
EventId = Annotated[
    str,
    BeforeValidator(_id_from_int),
    AfterValidator(
        _id_rules(MAX_EVENT_ID_CHARS, _EVENT_ID, "may only contain letters, digits and . _ : -")
    ),
]
OrderId = Annotated[
    str,
    BeforeValidator(_id_from_int),
    AfterValidator(
        _id_rules(MAX_ORDER_ID_CHARS, _EVENT_ID, "may only contain letters, digits and . _ : -")
    ),
]
Timestamp = Annotated[AwareDatetime, BeforeValidator(_timestamp)]
ShortText = Annotated[Text, Field(max_length=128)]
Price = Annotated[float, Field(ge=0, le=MAX_PRICE, strict=True, allow_inf_nan=False)]


def _bounded_json(limit: int, field: str) -> Any:
    def check(value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        unstorable = _unstorable_json(value, field, 0)
        if unstorable is not None:
            raise PydanticCustomError("json_unstorable", unstorable)
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        if size > limit:
            raise PydanticCustomError(
                "too_large",
                "{field} must be at most {limit} bytes as JSON (got {size})",
                {"field": field, "limit": limit, "size": size},
            )
        return value

    return check


def new_event_ids(count: int) -> list[str]:
    """``count`` generated event ids: 128 random bits each, as 32 hex characters, from one read
    of the OS random source."""
    fresh = os.urandom(16 * count).hex()
    return [fresh[i : i + 32] for i in range(0, 32 * count, 32)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)


class EventIn(_Frozen):
    """One user event as posted to ``POST /v1/events``."""

    event_id: EventId | None = None
    user_id: Id
    event_type: EventType
    product_id: Id
    timestamp: Timestamp | None = None
    value: float | None = Field(default=None, ge=0, le=1e9, strict=True, allow_inf_nan=False)
    price: Price | None = None
    session_id: ShortText | None = None
    rec_id: Annotated[Text, Field(max_length=64)] | None = None
    context: dict[str, Any] | None = None

    _context_size = field_validator("context")(_bounded_json(MAX_CONTEXT_BYTES, "context"))

    @model_validator(mode="after")
    def _rating_value(self) -> EventIn:
        if self.event_type == "rating" and (self.value is None or not 1 <= self.value <= 5):
            raise PydanticCustomError(
                "rating_value", "value: a rating event needs value between 1 and 5"
            )
        return self

    def to_record(self, received_at: datetime) -> UserEvent:
        """Resolve defaults: generated event_id, receive time as event time when absent.

        The fields were validated on the way in, so the record is built without re-validating.
        """
        return UserEvent.model_construct(
            **{
                **self.__dict__,
                "event_id": self.event_id or new_event_ids(1)[0],
                "timestamp": self.timestamp or received_at,
            },
            received_at=received_at,
        )


class EventBatchIn(_Frozen):
    """``{"events": [...]}`` with 1..1000 events."""

    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


class UserEvent(_Frozen):
    """An accepted event on ``events.v1`` (key: user_id).

    ``event_id`` is the idempotency key downstream: the archive stores one row per event_id
    and the profile counts each event_id once, whatever the redeliveries.
    """

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


def unstorable(event: UserEvent) -> str | None:
    """Why the archive cannot store a consumed event, naming the field, or None.

    Ingest refuses such an event (422), but a record written straight to ``events.v1`` (another
    producer, an older ingest) decodes with a NUL in ``session_id``, ``rec_id`` or ``context``
    (an unpaired surrogate does not decode at all): Postgres rejects it, so the archive
    dead-letters it, and a consumer that counts events (the stream processor) dead-letters it
    too instead of counting an event the archive does not hold. Nesting is not judged here
    (what decoded, Postgres stores)."""
    for name, text in (("session_id", event.session_id), ("rec_id", event.rec_id)):
        if text is not None and _UNSTORABLE.search(text):
            return f"{name}: {_UNSTORABLE_REASON}"
    if event.context is not None:
        return _unstorable_json(event.context, "context", 0, max_depth=None)
    return None


class ProductIn(_Frozen):
    """Body of ``PUT /v1/products/{product_id}``."""

    name: Annotated[Text, Field(min_length=1, max_length=512)]
    category: Annotated[Text, Field(min_length=1, max_length=128)]
    price: Price
    in_stock: bool = Field(default=True, strict=True)
    active: bool = Field(default=True, strict=True)
    attributes: dict[str, Any] = Field(default_factory=dict)
    description: Annotated[Text, Field(max_length=8192)] = ""

    _attributes_size = field_validator("attributes")(
        _bounded_json(MAX_ATTRIBUTES_BYTES, "attributes")
    )

    def to_record(self, product_id: str, updated_at: datetime) -> ProductRecord:
        fields = {k: v for k, v in self.__dict__.items() if k in _PRODUCT_FIELDS}
        return ProductRecord.model_construct(**fields, product_id=product_id, updated_at=updated_at)


class ProductBatchItem(ProductIn):
    """One item of ``POST /v1/products``: a product with its id."""

    product_id: Id


class ProductBatchIn(_Frozen):
    """``{"products": [...]}`` with 1..1000 products."""

    products: list[ProductBatchItem] = Field(min_length=1, max_length=MAX_BATCH)


class ProductRecord(_Frozen):
    """Latest state of a product on ``catalog.v1`` (key: product_id, compacted).

    ``active=false`` is a deactivation (``DELETE /v1/products/{id}``): never recommend it.
    """

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


class UserErased(_Frozen):
    """A user's erasure on ``users.v1`` (key: user_id, compacted): ``DELETE /v1/users/{id}``.

    It replaces the user's attributes record under the same key, so compaction drops them;
    consumers forget the user: the stream processor deletes the live profile, the archive and
    the training window skip the user's events (ingest records the id in ``erased_users``).
    """

    kind: Literal["user_erased"] = "user_erased"
    schema_version: Literal[1] = SCHEMA_VERSION
    user_id: Id
    erased_at: AwareDatetime


class OrderItemIn(_Frozen):
    """One order line: ``quantity`` units of ``product_id`` at unit ``price``."""

    product_id: Id
    quantity: int = Field(ge=1, le=100000, strict=True)
    price: Price


class OrderIn(_Frozen):
    """Body of ``POST /v1/orders``: stored as an order and emitted as one purchase per item.

    Line ``n`` (1-based) becomes the purchase event ``{order_id}:{n}``, so a retried order
    publishes the same event_ids and is counted once downstream.
    """

    order_id: OrderId
    user_id: Id
    items: list[OrderItemIn] = Field(min_length=1, max_length=MAX_BATCH)
    timestamp: Timestamp | None = None

    @model_validator(mode="after")
    def _total_bounded(self) -> OrderIn:
        if self.total > MAX_ORDER_TOTAL:
            raise PydanticCustomError(
                "order_total", "items: order total exceeds {limit:g}", {"limit": MAX_ORDER_TOTAL}
            )
        return self

    @property
    def total(self) -> float:
        return sum(item.quantity * item.price for item in self.items)

    def event_ids(self) -> list[str]:
        return [order_event_id(self.order_id, n) for n in range(1, len(self.items) + 1)]


def order_event_id(order_id: str, line_no: int) -> str:
    """The deterministic event_id of an order line (1-based): ``{order_id}:{line_no}``."""
    return f"{order_id}:{line_no}"


class ModelAnnouncement(_Frozen):
    """A model version made active, on ``models.v1``."""

    kind: Literal["model"] = "model"
    schema_version: Literal[1] = SCHEMA_VERSION
    version: int = Field(ge=1)
    artifact_uri: str
    activated_at: AwareDatetime


def encode(record: BaseModel) -> bytes:
    """Serialise a record for Kafka: compact JSON, UTF-8."""
    return record.model_dump_json(exclude_none=True).encode()


_PRODUCT_FIELDS = frozenset(ProductIn.model_fields)

TopicRecord = Annotated[
    UserEvent | ProductRecord | UserRecord | UserErased | ModelAnnouncement,
    Field(discriminator="kind"),
]
"""Every record on streamrec's topics, told apart by ``kind`` (event, product, user,
user_erased, model)."""
AnyRecord = UserEvent | ProductRecord | UserRecord | UserErased | ModelAnnouncement
R = TypeVar("R", UserEvent, ProductRecord, UserRecord, UserErased, ModelAnnouncement)
_ANY_RECORD: TypeAdapter[AnyRecord] = TypeAdapter(TopicRecord)


@overload
def decode(raw: bytes | str) -> AnyRecord: ...
@overload
def decode(raw: bytes | str, kind: type[R]) -> R: ...
def decode(raw: bytes | str, kind: type[R] | None = None) -> AnyRecord | R:
    """THE decoder of topic values: the record ``raw`` holds, chosen by its ``kind``; with
    ``kind``, only a record of that class is accepted (a topic's consumer passes its topic's
    class, ``topics.RECORDS[topic]``). Raises ``pydantic.ValidationError`` on poison input
    (including a record of another kind)."""
    if kind is None:
        return _ANY_RECORD.validate_json(raw)
    return kind.model_validate_json(raw)


def decode_event(raw: bytes) -> UserEvent:
    """``decode(raw, UserEvent)``: an ``events.v1`` value."""
    return decode(raw, UserEvent)


def decode_product(raw: bytes) -> ProductRecord:
    """``decode(raw, ProductRecord)``: a ``catalog.v1`` value."""
    return decode(raw, ProductRecord)


def decode_user(raw: bytes) -> UserRecord:
    """``decode(raw, UserRecord)``: a ``users.v1`` attributes value (an erasure is refused)."""
    return decode(raw, UserRecord)


_USER_UPDATE: TypeAdapter[UserRecord | UserErased] = TypeAdapter(
    Annotated[UserRecord | UserErased, Field(discriminator="kind")]
)


def decode_user_update(raw: bytes) -> UserRecord | UserErased:
    """Any ``users.v1`` value: new attributes (``UserRecord``) or an erasure (``UserErased``)."""
    return _USER_UPDATE.validate_json(raw)
