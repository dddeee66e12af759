"""``POST /v1/events``: one event or ``{"events": [...]}``; 202 only after the broker acked all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter

from streamrec_ingest import intake, recent
from streamrec_ingest.deps import ImportKey, IngestState, authorize_events
from streamrec_ingest.routes.schemas import EventsAccepted, error_responses
from streamrec_shared import metrics, topics
from streamrec_shared.errors import RetryableError
from streamrec_shared.events import EVENT_TYPES, EventBatchIn, EventIn
from streamrec_shared.http import API_KEY_SECURITY, KeyRing

router = APIRouter(tags=["events"])

_ACCEPTED: dict[str, Counter] = {t: metrics.INGEST_EVENTS_ACCEPTED.labels(t) for t in EVENT_TYPES}
_REJECTED_INVALID = metrics.INGEST_EVENTS_REJECTED.labels("invalid")
_REJECTED_UNAVAILABLE = metrics.INGEST_EVENTS_REJECTED.labels("unavailable")

# The body is parsed by intake.parse_events (errors by index and field); documented here.
BODY_SCHEMA: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "anyOf": [
                    {"$ref": "#/components/schemas/EventIn"},
                    {"$ref": "#/components/schemas/EventBatchIn"},
                ]
            },
            "examples": {
                "one": {
                    "value": {"user_id": "u1", "event_type": "view", "product_id": "p1"},
                },
                "batch": {
                    "value": {
                        "events": [
                            {
                                "event_id": "e-1",
                                "user_id": 42,
                                "event_type": "purchase",
                                "product_id": "p7",
                                "timestamp": "2025-01-01T12:00:00Z",
                                "value": 1,
                                "price": 19.99,
                            }
                        ]
                    }
                },
            },
        }
    },
}
DOCUMENTED_MODELS = (EventIn, EventBatchIn)


async def accept_events(raw: bytes, state: IngestState, *, history: bool = False) -> dict[str, Any]:
    """Validate, bound event time, resolve, publish; returns the 202 body. Counts
    accepted/rejected per event.

    Event time must not be more than ``max_future_skew_s`` after receive time, and for live
    events (``history`` false) not more than ``max_live_age_days`` before it."""
    options = state.settings.ingest
    received_at = datetime.now(UTC)
    try:
        events = intake.parse_events(raw)
        intake.check_event_time(
            events,
            received_at,
            max_future=timedelta(seconds=options.max_future_skew_s),
            max_age=None
            if history or options.max_live_age_days is None
            else timedelta(days=options.max_live_age_days),
        )
    except intake.InvalidEvents as exc:
        _REJECTED_INVALID.inc(exc.count)
        raise
    event_ids, records = intake.encode_events(events, received_at)
    try:
        await state.publisher.publish(topics.EVENTS, records)
    except RetryableError as exc:
        _REJECTED_UNAVAILABLE.inc(len(records))
        # the ids the events had: a client that retries with them is counted once
        exc.details = {"event_ids": event_ids}
        raise
    await recent.remember(events, received_at.timestamp())  # read-your-writes, never fails
    for event_type, n in intake.count_by_type(events).items():
        _ACCEPTED[event_type].inc(n)
    return {
        "accepted": len(records),
        "event_ids": event_ids,
        "unknown_product_ids": state.known.unknown(map(_product_id, events)),
    }


def _product_id(event: EventIn) -> str:
    return event.product_id


async def events_request(
    ring: KeyRing,
    presented: str | None,
    raw: bytes,
    state: IngestState,
    client: str | None = None,
) -> dict[str, Any]:
    """The whole ``POST /v1/events``: key check, then ``accept_events``; returns the 202 body
    (the route and ``fastpath.EventsFastPath`` both answer with it). ``client``: the caller's
    address, for the per-client limit of publishable keys."""
    authorize_events(ring, presented, client)
    return await accept_events(raw, state)


@router.post(
    "/v1/events",
    status_code=202,
    response_model=EventsAccepted,
    responses=error_responses(401, 403, 413, 422, 429, 503),
    openapi_extra={"requestBody": BODY_SCHEMA, "security": API_KEY_SECURITY},
    summary="Publish user events",
)
async def post_events(request: Request) -> JSONResponse:
    """One event object, or ``{"events": [...]}`` with 1..1000 events.

    202 only after the broker acknowledged every event of the request. Integer ids become
    strings; ``timestamp`` is unix seconds or timezone-aware ISO-8601 (default: receive time);
    ``event_id`` is generated when absent — send your own to make retries idempotent. On 503
    the details carry the event_ids used: retry with them. Event time may be at most 5 minutes
    after receive time (setting ``max_future_skew_s``) and, when ``max_live_age_days`` is set,
    at most that many days before it; history then goes to ``POST /v1/events/history``.
    ``unknown_product_ids`` lists the product ids the catalog has not described (the events
    are accepted all the same; null while the catalog is not loaded).
    """
    state: IngestState = request.app.state.ingest
    presented = request.headers.get("x-api-key")
    client = request.client.host if request.client else None
    raw = await request.body()
    body = await events_request(request.app.state.keyring, presented, raw, state, client)
    return JSONResponse(body, status_code=202)


@router.post(
    "/v1/events/history",
    status_code=202,
    response_model=EventsAccepted,
    responses=error_responses(401, 403, 413, 422, 429, 503),
    openapi_extra={"requestBody": BODY_SCHEMA},
    summary="Publish past user events (replays, backfills)",
)
async def post_history(request: Request, _key: ImportKey) -> JSONResponse:
    """The body of ``POST /v1/events``, for history: any past event time (1970 on), never more
    than ``max_future_skew_s`` after receive time. Needs a key with scope ``import`` (or admin).
    Send your own ``event_id``s: a replay of the same history is then counted once."""
    state: IngestState = request.app.state.ingest
    body = await accept_events(await request.body(), state, history=True)
    return JSONResponse(body, status_code=202)
