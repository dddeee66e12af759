"""Turn a ``POST /v1/events`` body into validated events, or say exactly what is wrong.

Pure: bytes in, models or ``InvalidInput`` out; no I/O. The body is one event object or
``{"events": [...]}`` with 1..1000 events. Any invalid item rejects the whole request, and the
error lists every invalid item by index and field (``events[3].timestamp``).

The common body (string ids of printable ASCII) is validated in one pass of pydantic-core over
the raw bytes; every other body, valid or not, takes the reference path through ``EventIn``,
which normalises integer ids and words each error.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Annotated, Any

from pydantic import BaseModel, Field, ValidationError
from pydantic_core import from_json

from streamrec_shared.errors import InvalidInput
from streamrec_shared.events import (
    MAX_BATCH,
    MAX_EVENT_ID_CHARS,
    MAX_ID_CHARS,
    EventBatchIn,
    EventIn,
    UserEvent,
    new_event_ids,
)
from streamrec_shared.http import describe_validation

MAX_DETAILS = 100  # errors listed per response; the summary says how many more

# Printable ASCII without space: a subset of what Id accepts, kept unchanged by it.
_PlainId = Annotated[str, Field(strict=True, pattern=rf"^[!-~]{{1,{MAX_ID_CHARS}}}$")]
_PlainEventId = Annotated[
    str, Field(strict=True, pattern=rf"^[A-Za-z0-9._:\-]{{1,{MAX_EVENT_ID_CHARS}}}$")
]


class _PlainEvent(EventIn):
    """``EventIn`` with ids checked by pydantic-core alone (no Python call per id).

    It accepts a subset of what ``EventIn`` accepts, with the same values; what it refuses is
    validated again by ``EventIn`` (integer ids, other characters, errors to word).
    """

    event_id: _PlainEventId | None = None
    user_id: _PlainId
    product_id: _PlainId


class _PlainBatch(BaseModel):
    model_config = EventBatchIn.model_config

    events: list[_PlainEvent] = Field(min_length=1, max_length=MAX_BATCH)


class InvalidEvents(InvalidInput):
    """422 for an events body; ``count`` is how many events the request held (for metrics)."""

    def __init__(self, message: str, *, details: Any, count: int) -> None:
        super().__init__(message, details=details)
        self.count = count


def _fail(loc: str, reason: str, *, count: int = 1, kind: str = "invalid") -> InvalidEvents:
    field = loc.rsplit(".", 1)[-1] if loc != "body" else "body"
    detail = {"loc": loc, "index": None, "field": field, "reason": reason, "type": kind}
    return InvalidEvents(f"invalid request: {loc}: {reason}", details=[detail], count=count)


def parse_events(raw: bytes) -> list[EventIn]:
    """Validate a request body; raises ``InvalidEvents`` naming each invalid item and field."""
    events: list[EventIn]
    try:
        if b'"events"' in raw:
            events = [*_PlainBatch.model_validate_json(raw).events]
        else:
            events = [_PlainEvent.model_validate_json(raw)]
    except ValidationError:
        return _parse_reference(raw)
    return events


def _parse_reference(raw: bytes) -> list[EventIn]:
    if not raw.strip():
        raise _fail("body", 'empty body; send one event or {"events": [...]}')
    try:
        body = from_json(raw)
    except ValueError as exc:
        raise _fail("body", f"not valid JSON ({exc})", kind="json_invalid") from None
    if not isinstance(body, dict):
        raise _fail("body", 'must be a JSON object: one event, or {"events": [...]}')
    if "events" in body:
        items = body["events"]
        if not isinstance(items, list):
            raise _fail("events", "must be an array of event objects")
        if not items:
            raise _fail("events", "must hold at least 1 event", count=0)
        if len(items) > MAX_BATCH:
            raise _fail(
                "events",
                f"at most {MAX_BATCH} events per request (got {len(items)})",
                count=len(items),
                kind="too_long",
            )
        try:
            return EventBatchIn.model_validate(body).events
        except ValidationError as exc:
            raise _invalid(exc.errors(), len(items)) from None
    try:
        return [EventIn.model_validate(body)]
    except ValidationError as exc:
        raise _invalid(exc.errors(), 1) from None


def _invalid(errors: Sequence[Any], count: int) -> InvalidEvents:
    return _invalid_details(describe_validation(errors), count)


def _invalid_details(details: list[dict[str, Any]], count: int) -> InvalidEvents:
    bad_items = len({d["index"] for d in details if d["index"] is not None})
    shown = details[:MAX_DETAILS]
    parts = [f"{d['loc']}: {d['reason']}" for d in shown[:5]]
    more = f" (+{len(details) - 5} more)" if len(details) > 5 else ""
    scope = f" ({bad_items} of {count} events invalid; none published)" if count > 1 else ""
    return InvalidEvents(
        "invalid request: " + "; ".join(parts) + more + scope, details=shown, count=count
    )


def check_event_time(
    events: Sequence[EventIn],
    received_at: datetime,
    *,
    max_future: timedelta,
    max_age: timedelta | None,
) -> None:
    """Refuse event times after ``received_at + max_future`` or (with ``max_age``) before
    ``received_at - max_age``: one event from the far future would otherwise move every
    time-decayed score and the trainer's window. Raises ``InvalidEvents`` naming each event's
    ``timestamp`` and the bound it broke."""
    latest = received_at + max_future
    earliest = received_at - max_age if max_age is not None else None
    details: list[dict[str, Any]] = []
    for index, event in enumerate(events):
        ts = event.timestamp
        if ts is None or (ts <= latest and (earliest is None or ts >= earliest)):
            continue
        if ts > latest:
            reason = (
                f"more than {max_future.total_seconds():g} s after receive time "
                f"(latest accepted: {_utc_text(latest)})"
            )
            bound = {"latest": _utc_text(latest)}
        else:
            assert earliest is not None
            assert max_age is not None
            reason = (
                f"more than {max_age.total_seconds() / 86400:g} days before receive time "
                f"(earliest accepted: {_utc_text(earliest)}); send history to "
                "POST /v1/events/history"
            )
            bound = {"earliest": _utc_text(earliest)}
        loc = "timestamp" if len(events) == 1 else f"events[{index}].timestamp"
        details.append(
            {"loc": loc, "index": None if len(events) == 1 else index, "field": "timestamp",
             "reason": reason, "type": "timestamp_skew", **bound}
        )  # fmt: skip
    if details:
        raise _invalid_details(details, len(events))


def to_records(events: Sequence[EventIn], received_at: datetime) -> list[UserEvent]:
    """Resolve each event (event_id generated when absent, receive time as default time).

    The reference for :func:`encode_events`, which produces the same records' bytes faster.
    """
    return [e.to_record(received_at) for e in events]


def _utc_text(moment: datetime) -> str:
    """A UTC datetime as pydantic writes it: ``2025-01-01T12:00:00.123456Z``."""
    return moment.isoformat().replace("+00:00", "Z")


def encode_events(
    events: Sequence[EventIn], received_at: datetime
) -> tuple[list[str], list[tuple[bytes, bytes]]]:
    """The ``events.v1`` records of ``events``: (event_ids, [(key=user_id, value)]).

    Each value is the JSON of the ``UserEvent`` that :func:`to_records` would build (same
    fields and values; decode it with ``decode_event``), spliced from the validated inbound
    event's own JSON instead of building a model per event: the hot path of the gateway.
    """
    received = _utc_text(received_at)
    stamped = f'"received_at":"{received}",'.encode()
    timed = f'"timestamp":"{received}",'.encode() + stamped
    fresh = iter(new_event_ids(sum(e.event_id is None for e in events)))
    ids: list[str] = []
    records: list[tuple[bytes, bytes]] = []
    for event in events:
        # bytes straight from the serializer: model_dump_json's wrapper costs as much again
        body = event.__pydantic_serializer__.to_json(event, exclude_none=True)
        event_id = event.event_id
        if event_id is None:
            event_id = next(fresh)
            head = b'{"kind":"event","schema_version":1,"event_id":"%s",' % event_id.encode()
        else:
            head = b'{"kind":"event","schema_version":1,'
        tail = stamped if event.timestamp is not None else timed
        records.append((event.user_id.encode(), head + tail + body[1:]))
        ids.append(event_id)
    return ids, records


def count_by_type(events: Sequence[EventIn]) -> Counter[str]:
    return Counter(map(_event_type, events))


_event_type = attrgetter("event_type")
