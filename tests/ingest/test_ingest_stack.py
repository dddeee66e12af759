"""Ingest against the real broker and Postgres of the session stack.

Every "nothing published" claim is checked on the topic itself: the end offsets are taken
before the requests, and every record appended since is read back afterwards.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from streamrec_client import ApiError, AsyncStreamrecClient
from streamrec_dev.localstack.stack import StackDescription
from streamrec_shared import topics
from streamrec_shared.events import (
    EVENT_TYPES,
    MAX_BATCH,
    decode_event,
    decode_product,
    decode_user,
)

from .cases import BAD, GOOD
from .probe import end_offsets, read_since

pytestmark = pytest.mark.stack


def _tag() -> str:
    return uuid.uuid4().hex[:10]


async def test_events_reach_the_topic_normalised(
    stack: StackDescription, client: AsyncStreamrecClient
) -> None:
    tag = _tag()
    since = await end_offsets(stack.kafka_bootstrap, topics.EVENTS)
    types = list(EVENT_TYPES)
    events: list[dict[str, Any]] = [
        {
            "user_id": f"{tag}-u{i}",
            "event_type": t,
            "product_id": 1000 + i,
            "value": 4,
            "timestamp": 1_700_000_000 + i,
        }
        for i, t in enumerate(types)
    ]
    events.append(
        {
            "user_id": 123456789,
            "event_type": "view",
            "product_id": f"{tag}-p",
            "timestamp": "2024-02-29T23:59:59.5+05:30",
            "context": {"tag": tag},
        }
    )
    result = await client.send_events(events)
    assert result["accepted"] == len(events)
    single = await client.send_event(
        {"user_id": f"{tag}-solo", "event_type": "view", "product_id": "p1"}
    )
    ids = [*result["event_ids"], *single["event_ids"]]

    records = [
        r
        for r in await read_since(stack.kafka_bootstrap, since)
        if decode_event(r.value).event_id in ids
    ]
    by_id = {decode_event(r.value).event_id: (r.key, decode_event(r.value)) for r in records}
    assert set(by_id) == set(ids)
    key, first = by_id[ids[0]]
    assert key == f"{tag}-u0".encode()
    assert first.product_id == "1000"
    assert first.timestamp == datetime.fromtimestamp(1_700_000_000, tz=UTC)
    key, last = by_id[ids[len(types)]]
    assert (key, last.user_id) == (b"123456789", "123456789")
    assert last.timestamp.isoformat() == "2024-02-29T18:29:59.500000+00:00"
    assert last.context == {"tag": tag}
    assert [by_id[i][1].event_type for i in ids[: len(types)]] == types


async def test_bad_inputs_are_4xx_naming_the_field_and_publish_nothing(
    stack: StackDescription, raw: httpx.AsyncClient
) -> None:
    tag = _tag()
    since = await end_offsets(stack.kafka_bootstrap, topics.EVENTS)
    markers: list[str] = []

    def good() -> dict[str, Any]:
        markers.append(f"{tag}-{len(markers)}")
        return {**GOOD, "user_id": markers[-1]}

    for case, bad, field, words in BAD:
        # alone, and as the third event of a batch whose other events are fine
        r = await raw.post("/v1/events", json=bad)
        assert r.status_code == 422, (case, r.text)
        assert any(
            d["loc"] == field and words in d["reason"] for d in r.json()["error"]["details"]
        ), (case, r.text)
        r = await raw.post("/v1/events", json={"events": [good(), good(), bad]})
        assert r.status_code == 422, (case, r.text)
        error = r.json()["error"]
        assert error["code"] == "invalid_request"
        assert f"events[2].{field}" in error["message"], (case, error["message"])
        assert all(d["index"] == 2 for d in error["details"]), (case, error)

    body_cases: list[tuple[str, bytes, int, str]] = [
        (
            "oversized batch",
            json.dumps({"events": [good()] * (MAX_BATCH + 1)}).encode(),
            422,
            "events",
        ),
        ("empty batch", b'{"events": []}', 422, "events"),
        ("not JSON", b"{oops", 422, "body"),
        ("array body", json.dumps([good()]).encode(), 422, "body"),
        (
            "oversized body",
            json.dumps({"events": [{**good(), "context": {"x": "y" * 3000}}] * 800}).encode(),
            413,
            "body",
        ),
    ]
    for case, content, status, field in body_cases:
        r = await raw.post(
            "/v1/events", content=content, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == status, (case, r.text)
        assert field in r.json()["error"]["message"], (case, r.text)

    published = await read_since(stack.kafka_bootstrap, since)
    leaked = [r for r in published if decode_event(r.value).user_id in set(markers)]
    assert leaked == [], "events of rejected requests were published"


async def test_keys_and_scopes(stack: StackDescription) -> None:
    url = stack.urls["ingest"]
    event = {"user_id": "auth-u", "event_type": "view", "product_id": "p"}
    product = {"name": "n", "category": "c", "price": 1.0}
    async with httpx.AsyncClient(base_url=url, timeout=10) as c:
        r = await c.post("/v1/events", json=event)
        assert r.status_code == 401
        assert r.json()["error"]["message"] == "X-API-Key: header missing"
        r = await c.post("/v1/events", json=event, headers={"X-API-Key": "wrong"})
        assert r.status_code == 401
        reader = {"X-API-Key": stack.api_keys["reader"]}
        r = await c.post("/v1/events", json=event, headers=reader)
        assert r.status_code == 403
        assert "events:write" in r.json()["error"]["message"]
        r = await c.put("/v1/products/auth-p", json=product, headers=reader)
        assert r.status_code == 403
        writer = {"X-API-Key": stack.api_keys["writer"]}
        assert (await c.post("/v1/events", json=event, headers=writer)).status_code == 202
        r = await c.put("/v1/products/auth-p", json=product, headers=writer)
        assert r.status_code == 202
        assert (await c.get("/healthz")).status_code == 200
        ready = await c.get("/readyz")
        assert ready.json() == {"status": "ready", "checks": {"kafka": True, "postgres": True}}
        assert "streamrec_ingest_events_accepted_total" in (await c.get("/metrics")).text


async def test_products_go_to_the_catalog_topic_and_postgres(
    stack: StackDescription, client: AsyncStreamrecClient, db: asyncpg.Connection
) -> None:
    tag = _tag()
    since = await end_offsets(stack.kafka_bootstrap, topics.CATALOG)
    await client.put_product(
        f"{tag}-a",
        {
            "name": "Lamp",
            "category": f"{tag}-home",
            "price": 19.5,
            "attributes": {"colour": "red"},
            "description": "A red lamp",
        },
    )
    batch = [
        {
            "product_id": f"{tag}-{i}",
            "name": f"Item {i}",
            "category": f"{tag}-toys",
            "price": float(i),
            "in_stock": i % 2 == 0,
        }
        for i in range(5)
    ]
    assert (await client.put_products(batch))["accepted"] == 5
    await client.delete_product(f"{tag}-a")

    records = [decode_product(r.value) for r in await read_since(stack.kafka_bootstrap, since)]
    mine = [r for r in records if r.product_id.startswith(tag)]
    assert [r.product_id for r in mine if r.product_id == f"{tag}-a"] == [f"{tag}-a"] * 2
    lamp_states = [r for r in mine if r.product_id == f"{tag}-a"]
    assert lamp_states[0].active
    assert not lamp_states[1].active
    assert lamp_states[1].name == "Lamp"  # the deactivation carries the full record
    assert len([r for r in mine if r.category == f"{tag}-toys"]) == 5

    row = await db.fetchrow("SELECT * FROM products WHERE product_id = $1", f"{tag}-a")
    assert row is not None
    assert (row["name"], row["category_id"], float(row["price"])) == ("Lamp", f"{tag}-home", 19.5)
    assert row["in_catalog"] is True
    assert row["active"] is False
    assert json.loads(row["attributes"]) == {"colour": "red"}
    assert row["description"] == "A red lamp"
    cats = await db.fetch(
        "SELECT category_id FROM categories WHERE category_id LIKE $1", f"{tag}-%"
    )
    assert {c["category_id"] for c in cats} == {f"{tag}-home", f"{tag}-toys"}
    stock = await db.fetch(
        "SELECT product_id, in_stock FROM products WHERE category_id = $1", f"{tag}-toys"
    )
    assert {r["product_id"]: r["in_stock"] for r in stock} == {
        f"{tag}-{i}": i % 2 == 0 for i in range(5)
    }
    with pytest.raises(ApiError) as info:
        await client.delete_product(f"{tag}-never-seen")
    assert info.value.status == 404


async def test_users_go_to_the_users_topic_and_postgres(
    stack: StackDescription, client: AsyncStreamrecClient, db: asyncpg.Connection
) -> None:
    user = f"{_tag()}-user"
    since = await end_offsets(stack.kafka_bootstrap, topics.USERS)
    await client.put_user(user, {"tier": "gold", "country": "NL"})
    await client.put_user(user, {"tier": "silver"})
    records = [decode_user(r.value) for r in await read_since(stack.kafka_bootstrap, since)]
    assert [r.attributes for r in records if r.user_id == user] == [
        {"tier": "gold", "country": "NL"},
        {"tier": "silver"},
    ]
    stored = await db.fetchval("SELECT attributes FROM users WHERE user_id = $1", user)
    assert json.loads(stored) == {"tier": "silver"}


async def test_orders_are_stored_and_emitted_once_even_when_retried(
    stack: StackDescription, client: AsyncStreamrecClient, db: asyncpg.Connection
) -> None:
    tag = _tag()
    order = {
        "order_id": f"o-{tag}",
        "user_id": f"{tag}-buyer",
        "timestamp": "2025-03-01T10:00:00Z",
        "items": [
            {"product_id": f"{tag}-new", "quantity": 2, "price": 9.99},
            {"product_id": f"{tag}-other", "quantity": 1, "price": 100},
        ],
    }
    since = await end_offsets(stack.kafka_bootstrap, topics.EVENTS)
    first = await client.post_order(order)
    assert first["event_ids"] == [f"o-{tag}:1", f"o-{tag}:2"]
    assert first["replayed"] is False
    again = await client.post_order(order)  # a retry
    assert again["event_ids"] == first["event_ids"]
    assert again["replayed"] is True

    stored = await db.fetchrow("SELECT * FROM orders WHERE order_id = $1", f"o-{tag}")
    assert stored is not None
    assert stored["user_id"] == f"{tag}-buyer"
    assert float(stored["total"]) == pytest.approx(119.98)
    lines = await db.fetch(
        "SELECT line_no, product_id, quantity, event_id FROM order_items WHERE order_id = $1"
        " ORDER BY line_no",
        f"o-{tag}",
    )
    assert [(r["line_no"], r["product_id"], r["quantity"], r["event_id"]) for r in lines] == [
        (1, f"{tag}-new", 2, f"o-{tag}:1"),
        (2, f"{tag}-other", 1, f"o-{tag}:2"),
    ]
    placeholder = await db.fetchrow(
        "SELECT in_catalog FROM products WHERE product_id = $1", f"{tag}-new"
    )
    assert placeholder is not None
    assert placeholder["in_catalog"] is False

    purchases = [decode_event(r.value) for r in await read_since(stack.kafka_bootstrap, since)]
    mine = [e for e in purchases if e.user_id == f"{tag}-buyer"]
    # published twice (the retry), always with the same ids: downstream counts each once
    assert sorted(e.event_id for e in mine) == sorted(first["event_ids"] * 2)
    assert {e.event_type for e in mine} == {"purchase"}
    line1 = next(e for e in mine if e.event_id.endswith(":1"))
    assert (line1.value, line1.price) == (2.0, 9.99)
    assert line1.timestamp == datetime(2025, 3, 1, 10, tzinfo=UTC)

    changed = {**order, "items": order["items"][:1]}
    with pytest.raises(ApiError) as info:
        await client.post_order(changed)
    assert info.value.status == 409
    assert "order_id" in str(info.value)
