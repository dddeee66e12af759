"""The events body parser: every kind of bad input is named by index and field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streamrec_ingest import intake
from streamrec_shared.events import EVENT_TYPES, MAX_BATCH, decode_event

from .cases import BAD, GOOD


def _body(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def _route(raw: bytes) -> None:
    """What the events route checks: the body's rules, then the live event-time bound."""
    events = intake.parse_events(raw)
    bound = timedelta(minutes=5)
    intake.check_event_time(events, datetime.now(UTC), max_future=bound, max_age=None)


def _errors(raw: bytes) -> list[dict[str, Any]]:
    with pytest.raises(intake.InvalidEvents) as info:
        _route(raw)
    details: list[dict[str, Any]] = info.value.details
    return details


@pytest.mark.parametrize(("case", "body", "loc", "words"), BAD, ids=[b[0] for b in BAD])
def test_single_bad_event_names_the_field(case: str, body: Any, loc: str, words: str) -> None:
    details = _errors(_body(body))
    assert any(d["loc"] == loc and words in d["reason"] for d in details), details


@pytest.mark.parametrize(("case", "body", "loc", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_event_in_batch_names_index_and_field(
    case: str, body: Any, loc: str, words: str
) -> None:
    details = _errors(_body({"events": [GOOD, GOOD, body]}))
    assert any(
        d["loc"] == f"events[2].{loc}" and d["index"] == 2 and words in d["reason"] for d in details
    ), details
    assert all(d["index"] == 2 for d in details)


@pytest.mark.parametrize(
    ("raw", "loc", "words"),
    [
        (b"", "body", "empty body"),
        (b"{not json", "body", "not valid JSON"),
        (b"[1, 2]", "body", "JSON object"),
        (b'"text"', "body", "JSON object"),
        (b'{"events": []}', "events", "at least 1"),
        (b'{"events": {"a": 1}}', "events", "array"),
        (_body({"events": [GOOD] * (MAX_BATCH + 1)}), "events", "at most 1000"),
        (_body({"events": [GOOD], "extra": 1}), "extra", "Extra inputs"),
        (_body({"events": [GOOD, 7]}), "events[1]", "valid dictionary"),
    ],
)
def test_bad_bodies(raw: bytes, loc: str, words: str) -> None:
    details = _errors(raw)
    assert any(d["loc"] == loc and words in d["reason"] for d in details), details


def test_every_invalid_item_is_listed_with_a_summary() -> None:
    events = [GOOD, {**GOOD, "price": -1}, GOOD, {**GOOD, "user_id": ""}, {**GOOD, "x": 1}]
    with pytest.raises(intake.InvalidEvents) as info:
        intake.parse_events(_body({"events": events}))
    assert [d["index"] for d in info.value.details] == [1, 3, 4]
    assert "3 of 5 events invalid; none published" in info.value.message
    assert info.value.count == 5


def test_good_events_are_normalised() -> None:
    raw = _body(
        {
            "events": [
                {
                    "user_id": 42,
                    "event_type": "purchase",
                    "product_id": 7,
                    "value": 2,
                    "price": 5,
                    "timestamp": 1_700_000_000,
                },
                {**GOOD, "event_id": "e:1", "timestamp": "2024-05-01T10:00:00+02:00"},
                {**GOOD, "event_type": "rating", "value": 4.5, "timestamp": "2024-05-01T08:00Z"},
                {**GOOD, "event_type": "remove_from_cart", "context": {"page": "cart"}},
            ]
        }
    )
    events = intake.parse_events(raw)
    assert (events[0].user_id, events[0].product_id) == ("42", "7")
    assert events[0].timestamp == datetime.fromtimestamp(1_700_000_000, tz=UTC)
    assert events[1].timestamp == datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    received = datetime(2025, 1, 1, tzinfo=UTC)
    records = intake.to_records(events, received)
    assert records[1].event_id == "e:1"
    assert len(records[0].event_id) == 32
    assert records[0].event_id != records[2].event_id
    assert records[3].timestamp == received
    assert records[3].received_at == received
    assert records[2].timestamp == datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
    assert intake.count_by_type(events) == {"purchase": 1, "view": 1, "rating": 1,
                                             "remove_from_cart": 1}  # fmt: skip


def test_single_event_object_is_one_event() -> None:
    (event,) = intake.parse_events(_body({**GOOD, "user_id": 0}))
    assert event.user_id == "0"


def test_every_event_type_is_accepted() -> None:
    types = list(EVENT_TYPES)
    events = [{**GOOD, "event_type": t, "value": 3} for t in types]
    assert [e.event_type for e in intake.parse_events(_body({"events": events}))] == types


def test_fast_encoding_matches_the_record_model() -> None:
    """encode_events splices JSON by hand: it must decode to exactly the UserEvent of to_records."""
    raw = _body(
        {
            "events": [
                GOOD,
                {**GOOD, "event_id": "given:1", "timestamp": "2024-05-01T10:00:00.25+02:00"},
                {
                    "user_id": 7,
                    "event_type": "purchase",
                    "product_id": 'p\u00e9"q',
                    "value": 2,
                    "price": 0,
                    "session_id": "s 1",
                    "rec_id": "r-1",
                    "context": {"page": "caf\u00e9", "n": [1, 2.5, None], "q": 'a"b'},
                },
                {**GOOD, "event_type": "rating", "value": 5, "timestamp": 0},
            ]
        }
    )
    events = intake.parse_events(raw)
    received = datetime(2025, 6, 1, 12, 30, 15, 123456, tzinfo=UTC)
    ids, records = intake.encode_events(events, received)
    decoded = [decode_event(value) for _, value in records]
    assert [key for key, _ in records] == [e.user_id.encode() for e in events]
    assert [d.event_id for d in decoded] == ids
    assert ids[1] == "given:1"
    assert len(ids[0]) == 32
    expected = intake.to_records(events, received)
    for got, want in zip(decoded, expected, strict=True):
        assert got.model_dump(exclude={"event_id"}) == want.model_dump(exclude={"event_id"})
    assert decoded[0].timestamp == received
    assert decoded[3].timestamp == datetime(1970, 1, 1, tzinfo=UTC)


def test_event_time_bounds_around_receive_time() -> None:
    """Up to 5 minutes ahead is a client's clock skew; with ``max_age``, so many days back."""
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    ok = [
        GOOD,
        {**GOOD, "timestamp": (now + timedelta(minutes=4)).isoformat()},
        {**GOOD, "timestamp": (now - timedelta(days=29)).isoformat()},
    ]
    events = intake.parse_events(_body({"events": ok}))
    bounds = {"max_future": timedelta(minutes=5), "max_age": timedelta(days=30)}
    intake.check_event_time(events, now, **bounds)
    late = {**GOOD, "timestamp": (now - timedelta(days=31)).isoformat()}
    events = intake.parse_events(_body({"events": [*ok, late]}))
    with pytest.raises(intake.InvalidEvents) as info:
        intake.check_event_time(events, now, **bounds)
    (detail,) = info.value.details
    assert detail["loc"] == "events[3].timestamp"
    assert detail["earliest"] == "2026-05-02T12:00:00Z"
    assert "/v1/events/history" in detail["reason"]
    # history: any past time, never the future
    intake.check_event_time(events, now, max_future=timedelta(minutes=5), max_age=None)
