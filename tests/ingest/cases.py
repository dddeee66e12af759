"""Bad event inputs shared by the unit and the stack tests: (case, event, field, reason words)."""

from __future__ import annotations

from typing import Any

GOOD: dict[str, Any] = {"user_id": "u1", "event_type": "view", "product_id": "p1"}

BAD: list[tuple[str, Any, str, str]] = [
    # (case, body, loc, words in the reason)
    ("missing user_id", {"event_type": "view", "product_id": "p"}, "user_id", "required"),
    ("unknown event_type", {**GOOD, "event_type": "buy"}, "event_type", "'view'"),
    ("event_type wrong type", {**GOOD, "event_type": 3}, "event_type", "'view'"),
    ("negative price", {**GOOD, "price": -1}, "price", "greater than or equal to 0"),
    ("price as string", {**GOOD, "price": "9.99"}, "price", "valid number"),
    ("value as bool", {**GOOD, "value": True}, "value", "valid number"),
    ("rating without value", {**GOOD, "event_type": "rating"}, "value", "between 1 and 5"),
    ("rating out of range", {**GOOD, "event_type": "rating", "value": 9}, "value", "1 and 5"),
    ("naive ISO", {**GOOD, "timestamp": "2024-05-01T10:00:00"}, "timestamp", "timezone"),
    ("garbage time", {**GOOD, "timestamp": "yesterday"}, "timestamp", "ISO-8601"),
    ("milliseconds", {**GOOD, "timestamp": 1_700_000_000_000}, "timestamp", "out of range"),
    ("negative time", {**GOOD, "timestamp": -5}, "timestamp", "out of range"),
    ("year 9999", {**GOOD, "timestamp": "9999-01-01T00:00:00Z"}, "timestamp", "out of range"),
    ("bool time", {**GOOD, "timestamp": False}, "timestamp", "unix seconds"),
    ("empty id", {**GOOD, "user_id": ""}, "user_id", "empty"),
    ("long id", {**GOOD, "product_id": "p" * 129}, "product_id", "128"),
    ("bool id", {**GOOD, "user_id": True}, "user_id", "boolean"),
    ("float id", {**GOOD, "user_id": 1.5}, "user_id", "number with a fraction"),
    ("null id", {**GOOD, "user_id": None}, "user_id", "null"),
    ("whitespace id", {**GOOD, "user_id": "u 1"}, "user_id", "whitespace"),
    ("newline id", {**GOOD, "product_id": "p\n"}, "product_id", "whitespace"),
    ("bad event_id", {**GOOD, "event_id": "a/b"}, "event_id", "letters, digits"),
    ("long event_id", {**GOOD, "event_id": "e" * 65}, "event_id", "64"),
    ("unknown field", {**GOOD, "colour": "red"}, "colour", "Extra inputs"),
    ("big context", {**GOOD, "context": {"x": "y" * 4100}}, "context", "4096 bytes"),
    ("context not object", {**GOOD, "context": [1]}, "context", "dictionary"),
    ("long session", {**GOOD, "session_id": "s" * 129}, "session_id", "128"),
    ("long rec_id", {**GOOD, "rec_id": "r" * 65}, "rec_id", "64"),
    # issue 17 finding 1: text the archive (Postgres) cannot store was acknowledged, then
    # stalled the archive forever
    ("NUL in session_id", {**GOOD, "session_id": "s\u0000"}, "session_id", "NUL"),
    ("NUL in rec_id", {**GOOD, "rec_id": "\u0000r"}, "rec_id", "NUL"),
    ("NUL in user_id", {**GOOD, "user_id": "u\u0000"}, "user_id", "control characters"),
    ("NUL in context", {**GOOD, "context": {"a": ["x", "\u0000"]}}, "context", "context.a[1]"),
    ("NUL in a context key", {**GOOD, "context": {"a": {"k\u0000": 1}}}, "context", "NUL"),
    (
        "deep context",
        {**GOOD, "context": {"a": [[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}},
        "context",
        "nested deeper",
    ),
    # issue 17 finding 2: one far-future event wiped trending and the training window
    ("far future", {**GOOD, "timestamp": "2990-01-01T00:00:00Z"}, "timestamp", "receive time"),
    ("year 2100 in seconds", {**GOOD, "timestamp": 4_102_444_800}, "timestamp", "after receive"),
]
