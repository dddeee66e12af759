"""The HTTP layer with a fake producer: contract, auth, limits, bounded 503s, probes, docs."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from streamrec_ingest.app import create_app
from streamrec_shared.events import decode_event

from ..polling import eventually
from ..polling import now as _now
from .fakes import KEYS, FakeProducer, unit_settings

EVENT = {"user_id": "u1", "event_type": "view", "product_id": "p1"}


def asgi_client(app: FastAPI, key: str | None) -> httpx.AsyncClient:
    """A client of ``app`` in this process, with ``key`` as its X-API-Key (if any)."""
    headers = {"X-API-Key": key} if key is not None else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://ingest", headers=headers
    )


def _counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_single_event_is_published_after_ack(
    http: httpx.AsyncClient, producer: FakeProducer
) -> None:
    r = await http.post("/v1/events", json={**EVENT, "user_id": 17, "event_id": "ev-1"})
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 1, "event_ids": ["ev-1"], "unknown_product_ids": None}
    (sent,) = producer.sent
    assert (sent.topic, sent.key) == ("events.v1", b"17")
    record = decode_event(sent.value)
    assert (record.event_id, record.user_id, record.event_type) == ("ev-1", "17", "view")
    assert record.timestamp == record.received_at  # default event time: receive time


async def test_batch_keeps_order_and_generates_missing_ids(
    http: httpx.AsyncClient, producer: FakeProducer
) -> None:
    before = _counter("streamrec_ingest_events_accepted_total", event_type="click")
    events = [{**EVENT, "user_id": f"u{i}", "event_type": "click"} for i in range(50)]
    events[3]["event_id"] = "mine"
    r = await http.post("/v1/events", json={"events": events})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["accepted"] == 50
    assert body["event_ids"][3] == "mine"
    assert len(set(body["event_ids"])) == 50
    sent = {decode_event(s.value).event_id: s for s in producer.sent}
    assert set(sent) == set(body["event_ids"])
    assert [sent[e].key for e in body["event_ids"]] == [f"u{i}".encode() for i in range(50)]
    # one batch per partition on the way out, each in the order of the request
    for partition in {s.partition for s in producer.sent}:
        ids = [decode_event(s.value).event_id for s in producer.sent if s.partition == partition]
        assert ids == [e for e in body["event_ids"] if sent[e].partition == partition]
    assert _counter("streamrec_ingest_events_accepted_total", event_type="click") == before + 50


async def test_invalid_batch_publishes_nothing(
    http: httpx.AsyncClient, producer: FakeProducer
) -> None:
    before = _counter("streamrec_ingest_events_rejected_total", reason="invalid")
    events = [EVENT, {**EVENT, "timestamp": "2024-01-01T00:00:00"}, EVENT]
    r = await http.post("/v1/events", json={"events": events})
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "invalid_request"
    assert "events[1].timestamp" in error["message"]
    assert error["details"][0]["index"] == 1
    assert error["details"][0]["field"] == "timestamp"
    assert producer.sent == []
    assert _counter("streamrec_ingest_events_rejected_total", reason="invalid") == before + 3


@pytest.mark.parametrize("declared", [True, False])
async def test_oversized_body_is_413(
    http: httpx.AsyncClient, producer: FakeProducer, declared: bool
) -> None:
    big = json.dumps({"events": [{**EVENT, "context": {"x": "y" * 4000}}] * 20}).encode()
    assert len(big) > 64 * 1024

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    content: Any = big if declared else chunks()
    r = await http.post("/v1/events", content=content)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"
    assert "body" in r.json()["error"]["message"]
    assert producer.sent == []


@pytest.mark.parametrize(
    ("key", "status", "code"),
    [
        (None, 401, "unauthorized"),
        ("nope", 401, "unauthorized"),
        ("k-reader", 403, "forbidden"),
        ("k-catalog", 403, "forbidden"),
    ],
)
async def test_events_need_a_key_with_scope(
    app: FastAPI, producer: FakeProducer, key: str | None, status: int, code: str
) -> None:
    async with asgi_client(app, key) as client:
        r = await client.post("/v1/events", json=EVENT)
    assert r.status_code == status
    assert r.json()["error"]["code"] == code
    assert "X-API-Key" in r.json()["error"]["message"]
    assert producer.sent == []


async def test_catalog_scope_is_separate(app: FastAPI) -> None:
    async with asgi_client(app, KEYS["writer"]) as client:
        r = await client.put("/v1/products/p1", json={"name": "n", "category": "c", "price": 1.0})
    assert r.status_code == 403
    assert "catalog:write" in r.json()["error"]["message"]


async def test_rate_limit_per_key_is_429_with_retry_after(app: FastAPI) -> None:
    # the writer key allows a burst of 5 then 5/s
    async with asgi_client(app, KEYS["writer"]) as client:
        statuses = [(await client.post("/v1/events", json=EVENT)) for _ in range(8)]
    assert [r.status_code for r in statuses[:5]] == [202] * 5
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, [r.status_code for r in statuses]
    assert int(limited[0].headers["Retry-After"]) >= 1
    assert limited[0].json()["error"]["code"] == "rate_limited"


@pytest.mark.parametrize("mode", ["hang", "error"])
async def test_broker_trouble_is_a_bounded_503(
    http: httpx.AsyncClient, producer: FakeProducer, mode: str
) -> None:
    producer.mode = mode
    started = time.monotonic()
    r = await http.post("/v1/events", json={"events": [EVENT, {**EVENT, "event_id": "keep"}]})
    took = time.monotonic() - started
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "2"
    assert took < 0.3 + 0.5  # publish_timeout_s=0.3 in these settings
    error = r.json()["error"]
    assert error["code"] == "unavailable"
    ids = error["details"]["event_ids"]
    assert len(ids) == 2
    assert ids[1] == "keep"
    # the broker comes back: the same service accepts again
    producer.mode = "ok"
    r = await http.post("/v1/events", json=EVENT)
    assert r.status_code == 202


async def test_producer_started_in_background_when_broker_is_down() -> None:
    producer = FakeProducer(fail_starts=2)
    settings = unit_settings(producer_retry_s=0.05)
    app = create_app(settings, producer=producer)
    async with (
        app.router.lifespan_context(app),
        asgi_client(app, KEYS["admin"]) as client,
    ):
        r = await client.post("/v1/events", json=EVENT)
        assert r.status_code == 503
        assert "not connected" in r.json()["error"]["message"]
        await eventually(
            _now(lambda: producer.starts >= 3), timeout=5, what="the producer", interval=0.02
        )
        r = await client.post("/v1/events", json=EVENT)
        assert r.status_code == 202
    assert producer.stopped


async def test_probes_metrics_docs(http: httpx.AsyncClient) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 503  # Postgres is not there in unit tests
    assert ready.json()["checks"] == {"kafka": True, "postgres": False}
    await http.post("/v1/events", json=EVENT)
    text = (await http.get("/metrics")).text
    for name in (
        "streamrec_ingest_events_accepted_total",
        "streamrec_ingest_publish_duration_seconds_bucket",
        "streamrec_http_request_duration_seconds_bucket",
    ):
        assert name in text
    assert (await http.get("/docs")).status_code == 200
    spec = (await http.get("/openapi.json")).json()
    assert "EventIn" in spec["components"]["schemas"]
    for path in ("/v1/events", "/v1/products/{product_id}", "/v1/products", "/v1/users/{user_id}",
                 "/v1/orders"):  # fmt: skip
        assert path in spec["paths"]


async def test_cors_for_configured_origins(http: httpx.AsyncClient) -> None:
    pre = await http.options(
        "/v1/events",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "X-API-Key, Content-Type",
        },
    )
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == "https://shop.example"
    r = await http.post("/v1/events", json={}, headers={"Origin": "https://shop.example"})
    assert r.status_code == 422
    assert r.headers["access-control-allow-origin"] == "https://shop.example"
    other = await http.post("/v1/events", json=EVENT, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


async def test_catalog_and_orders_validate_before_anything(
    http: httpx.AsyncClient, producer: FakeProducer
) -> None:
    cases: list[tuple[str, str, Any, str]] = [
        ("PUT", "/v1/products/p1", {"name": "n", "category": "c", "price": -1}, "price"),
        ("PUT", "/v1/products/p1", {"name": "n", "category": "c", "price": 1, "x": 1}, "x"),
        (
            "PUT",
            "/v1/products/p1",
            {"name": "n", "category": "c", "price": 1, "active": "no"},
            "active",
        ),
        ("PUT", "/v1/products/p%201", {"name": "n", "category": "c", "price": 1}, "product_id"),
        (
            "POST",
            "/v1/products",
            {"products": [{"name": "n", "category": "c", "price": 1}]},
            "products[0].product_id",
        ),
        ("PUT", "/v1/users/u1", {"attributes": {"a": "b" * 17000}}, "attributes"),
        ("POST", "/v1/orders", {"order_id": "o1", "user_id": "u1", "items": []}, "items"),
        (
            "POST",
            "/v1/orders",
            {
                "order_id": "o 1",
                "user_id": "u1",
                "items": [{"product_id": "p", "quantity": 1, "price": 1}],
            },
            "order_id",
        ),
        (
            "POST",
            "/v1/orders",
            {
                "order_id": "o1",
                "user_id": "u1",
                "items": [{"product_id": "p", "quantity": 0, "price": 1}],
            },
            "items[0].quantity",
        ),
    ]
    for method, path, body, loc in cases:
        r = await http.request(method, path, json=body)
        assert r.status_code == 422, (path, body, r.text)
        assert loc in [d["loc"] for d in r.json()["error"]["details"]], r.text
    assert producer.sent == []


async def test_catalog_write_without_database_is_503_and_publishes_nothing(
    http: httpx.AsyncClient, producer: FakeProducer
) -> None:
    r = await http.put("/v1/products/p1", json={"name": "n", "category": "c", "price": 1.0})
    assert r.status_code == 503
    assert "database" in r.json()["error"]["message"]
    assert producer.sent == []
