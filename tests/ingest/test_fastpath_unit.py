"""``EventsFastPath`` answers POST /v1/events exactly as the FastAPI route does.

Every case is sent twice, to the app alone and to the app behind its fast path (each on a
fresh app with a fake producer), and the answers must match: status, body, Retry-After, and
what reached the producer.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from starlette.types import ASGIApp

from streamrec_ingest.app import create_app
from streamrec_ingest.fastpath import ROUTE, with_fast_path

from .fakes import KEYS, FakeProducer, unit_settings

ONE = {"event_id": "e-1", "user_id": 7, "event_type": "view", "product_id": "p1"}
BATCH = {"events": [ONE, {**ONE, "event_id": "e-2", "event_type": "purchase", "price": 2.5}]}

CASES: list[tuple[str, bytes, dict[str, str]]] = [
    ("one event", json.dumps(ONE).encode(), {"X-API-Key": KEYS["writer"]}),
    ("a batch", json.dumps(BATCH).encode(), {"X-API-Key": KEYS["admin"]}),
    ("bad field", json.dumps({**ONE, "price": -1}).encode(), {"X-API-Key": KEYS["admin"]}),
    ("unknown field", json.dumps({**ONE, "colour": "red"}).encode(), {"X-API-Key": KEYS["admin"]}),
    ("not JSON", b"{nope", {"X-API-Key": KEYS["admin"]}),
    ("empty body", b"", {"X-API-Key": KEYS["admin"]}),
    ("no key", json.dumps(ONE).encode(), {}),
    ("unknown key", json.dumps(ONE).encode(), {"X-API-Key": "nope"}),
    ("key without the scope", json.dumps(ONE).encode(), {"X-API-Key": KEYS["catalog"]}),
    ("too large", b"[" + b" " * (3 * 2**20) + b"]", {"X-API-Key": KEYS["admin"]}),
]


async def _served(wrap: Callable[[FastAPI], ASGIApp]) -> AsyncIterator[tuple[Any, FakeProducer]]:
    producer = FakeProducer()
    app = create_app(unit_settings(), producer=producer)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=wrap(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://ingest") as client:
            yield client, producer


async def _answer(
    wrap: Callable[[FastAPI], ASGIApp], body: bytes, headers: dict[str, str]
) -> tuple[int, Any, str | None, list[bytes]]:
    async for client, producer in _served(wrap):
        r = await client.post(ROUTE, content=body, headers=headers)
        return (
            r.status_code,
            r.json(),
            r.headers.get("retry-after"),
            [s.value for s in producer.sent],
        )
    raise AssertionError("no client")


@pytest.mark.parametrize(("name", "body", "headers"), CASES, ids=[c[0] for c in CASES])
async def test_the_fast_path_answers_as_the_route(
    name: str, body: bytes, headers: dict[str, str]
) -> None:
    route = await _answer(lambda app: app, body, headers)
    fast = await _answer(with_fast_path, body, headers)
    assert fast[:3] == route[:3], name
    # the records carry the receive time where no timestamp was sent: compare what else
    assert [json.loads(v)["event_id"] for v in fast[3]] == [
        json.loads(v)["event_id"] for v in route[3]
    ]


async def test_the_fast_path_keeps_the_rate_limit_and_counts_requests() -> None:
    def served(status: str) -> float:
        labels = {"service": "ingest", "route": ROUTE, "method": "POST", "status": status}
        return REGISTRY.get_sample_value("streamrec_http_requests_total", labels) or 0.0

    before = served("202"), served("429")
    async for client, producer in _served(with_fast_path):
        # the writer key allows a burst of 5 then 5/s
        statuses = [
            (await client.post(ROUTE, json=ONE, headers={"X-API-Key": KEYS["writer"]}))
            for _ in range(8)
        ]
        assert [r.status_code for r in statuses[:5]] == [202] * 5
        limited = [r for r in statuses if r.status_code == 429]
        assert limited
        assert int(limited[0].headers["Retry-After"]) >= 1
        assert limited[0].json()["error"]["code"] == "rate_limited"
        assert len(producer.sent) == 8 - len(limited)
    assert served("202") - before[0] == 8 - len(limited)
    assert served("429") - before[1] == len(limited)


async def test_ordinary_event_requests_never_reach_the_framework() -> None:
    """What the fast path is for: a valid or invalid event request is answered without the
    FastAPI app; an oversized one (and every other route) is the app's."""
    reached: list[str] = []

    def spied(app: FastAPI) -> ASGIApp:
        fast = with_fast_path(app)
        inner = fast.app  # type: ignore[attr-defined]

        async def spy(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                reached.append(scope["path"])
            await inner(scope, receive, send)

        fast.app = spy  # type: ignore[attr-defined]
        return fast

    async for client, _ in _served(spied):
        headers = {"X-API-Key": KEYS["admin"]}
        assert (await client.post(ROUTE, json=ONE, headers=headers)).status_code == 202
        assert (await client.post(ROUTE, content=b"{nope", headers=headers)).status_code == 422
        assert (await client.post(ROUTE, json=ONE)).status_code == 401
        assert reached == []
        too_large = b"[" + b" " * (3 * 2**20) + b"]"
        assert (await client.post(ROUTE, content=too_large, headers=headers)).status_code == 413
        assert (await client.get("/healthz")).status_code == 200
        assert reached == [ROUTE, "/healthz"]
