"""Issue 17 on the ingest side, through the real stack: what the archive cannot store is refused
at the door, event time is bounded, history has its own route, the 202 names products the
catalog never described, and a user can be erased."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from streamrec_client import AsyncStreamrecClient
from streamrec_dev.localstack.stack import StackDescription
from streamrec_shared import topics
from streamrec_shared.events import UserErased, decode, decode_event

from ..polling import eventually
from .probe import end_offsets, read_since


def _tag() -> str:
    return uuid.uuid4().hex[:10]


def _named(response: httpx.Response, field: str, words: str) -> bool:
    details = response.json()["error"]["details"]
    if isinstance(details, dict):
        details = [details]
    return any(field in str(d.get("loc", d.get("field"))) and words in str(d) for d in details)


async def test_text_postgres_cannot_store_is_refused_and_nothing_is_stored(
    stack: StackDescription, raw: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    """Finding 1: a NUL in any string was acknowledged and then stalled the archive."""
    tag = _tag()
    since = {t: await end_offsets(stack.kafka_bootstrap, t) for t in (topics.CATALOG, topics.USERS)}
    product = {"name": "Lamp", "category": f"{tag}-c", "price": 1.0}
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("PUT", f"/v1/products/{tag}-p1", {**product, "name": "L\u0000"}, "name"),
        ("PUT", f"/v1/products/{tag}-p1", {**product, "category": "c\u0000"}, "category"),
        ("PUT", f"/v1/products/{tag}-p1", {**product, "description": "\u0000"}, "description"),
        (
            "PUT",
            f"/v1/products/{tag}-p1",
            {**product, "attributes": {"size": {"eu\u0000": 42}}},
            "attributes",
        ),
        (
            "POST",
            "/v1/products",
            {"products": [{**product, "product_id": f"{tag}-p\u0000"}]},
            "product_id",
        ),
        ("PUT", f"/v1/users/{tag}-u1", {"attributes": {"name": ["a", "b\u0000"]}}, "attributes"),
        (
            "POST",
            "/v1/orders",
            {
                "order_id": f"{tag}-o",
                "user_id": f"{tag}-u\u0000",
                "items": [{"product_id": f"{tag}-p1", "quantity": 1, "price": 1.0}],
            },
            "user_id",
        ),
        (
            "POST",
            "/v1/orders",
            {
                "order_id": f"{tag}-o",
                "user_id": f"{tag}-u1",
                "items": [{"product_id": f"{tag}-p\u0000", "quantity": 1, "price": 1.0}],
            },
            "product_id",
        ),
    ]
    deep: dict[str, Any] = {}
    for _ in range(200):  # finding 8: attributes nested ~200 deep were a 500
        deep = {"k": deep}
    cases.append(("PUT", f"/v1/users/{tag}-u1", {"attributes": deep}, "attributes"))
    for method, path, body, field in cases:
        r = await raw.request(method, path, json=body)
        assert r.status_code == 422, (path, body, r.text)
        assert _named(r, field, ""), (field, r.text)
    for topic, offsets in since.items():
        leaked = [r for r in await read_since(stack.kafka_bootstrap, offsets) if tag in str(r.key)]
        assert leaked == [], topic
    assert (
        await db.fetchval("SELECT count(*) FROM products WHERE product_id LIKE $1", tag + "%") == 0
    )
    assert await db.fetchval("SELECT count(*) FROM orders WHERE order_id LIKE $1", tag + "%") == 0


async def test_event_time_is_bounded_and_history_has_its_own_route(
    stack: StackDescription, raw: httpx.AsyncClient
) -> None:
    """Finding 2: ingest accepted event times up to year 3000."""
    tag = _tag()
    since = await end_offsets(stack.kafka_bootstrap, topics.EVENTS)
    now = datetime.now(UTC)
    event = {"user_id": f"{tag}-u", "event_type": "view", "product_id": f"{tag}-p"}

    def at(moment: datetime, n: int) -> dict[str, Any]:
        return {**event, "event_id": f"{tag}-{n}", "timestamp": moment.isoformat()}

    ahead = await raw.post("/v1/events", json=at(now + timedelta(hours=1), 0))
    assert ahead.status_code == 422, ahead.text
    (detail,) = ahead.json()["error"]["details"]
    assert detail["loc"] == "timestamp"
    assert "after receive time" in detail["reason"]
    assert "latest" in detail
    assert (await raw.post("/v1/events", json=at(now + timedelta(minutes=2), 1))).status_code == 202

    # history: any past time, never the far future; needs the import scope (admin covers it)
    old = at(datetime(2011, 1, 4, tzinfo=UTC), 2)
    history = await raw.post("/v1/events/history", json={"events": [old]})
    assert history.status_code == 202, history.text
    assert history.json()["event_ids"] == [f"{tag}-2"]
    r = await raw.post("/v1/events/history", json=at(datetime(2990, 1, 1, tzinfo=UTC), 3))
    assert r.status_code == 422
    assert _named(r, "timestamp", "after receive time")
    writer = {"X-API-Key": stack.api_keys["writer"]}
    r = await raw.post("/v1/events/history", json=old, headers=writer)
    assert r.status_code == 403
    assert "import" in r.json()["error"]["message"]

    published = [decode_event(r.value) for r in await read_since(stack.kafka_bootstrap, since)]
    assert sorted(e.event_id for e in published if e.user_id == f"{tag}-u") == [
        f"{tag}-1",
        f"{tag}-2",
    ]


async def test_the_202_names_products_the_catalog_never_described(
    raw: httpx.AsyncClient, client: AsyncStreamrecClient
) -> None:
    """Finding 11: events for undescribed products were accepted without a word."""
    tag = _tag()
    await client.put_product(f"{tag}-known", {"name": "n", "category": "c", "price": 1.0})
    events = [
        {"user_id": f"{tag}-u", "event_type": "view", "product_id": p}
        for p in (f"{tag}-known", f"{tag}-new", f"{tag}-new", f"{tag}-other")
    ]
    r = await raw.post("/v1/events", json={"events": events})
    assert r.status_code == 202
    assert r.json()["accepted"] == 4
    assert r.json()["unknown_product_ids"] == [f"{tag}-new", f"{tag}-other"]
    single = await raw.post("/v1/events", json=events[0])
    assert single.json()["unknown_product_ids"] == []


async def test_erasure_removes_the_users_rows_and_is_published(
    stack: StackDescription,
    raw: httpx.AsyncClient,
    client: AsyncStreamrecClient,
    db: asyncpg.Connection,
) -> None:
    """Finding 13: no way to honour a request to be forgotten."""
    tag = _tag()
    user, other = f"{tag}-u", f"{tag}-v"
    await client.put_product(f"{tag}-p", {"name": "n", "category": "c", "price": 2.0})
    await client.put_user(user, {"email": "someone@example.com"})
    events = [
        {"user_id": u, "event_type": "view", "product_id": f"{tag}-p", "event_id": f"{tag}-{u}"}
        for u in (user, other)
    ]
    await client.send_events(events)
    order = {
        "order_id": f"{tag}-o",
        "user_id": user,
        "items": [{"product_id": f"{tag}-p", "quantity": 1, "price": 2.0}],
    }
    assert (await raw.post("/v1/orders", json=order)).status_code == 202

    async def archived() -> bool:
        n = await db.fetchval(
            "SELECT count(*) FROM user_product_interactions WHERE user_id = ANY($1)", [user, other]
        )
        return bool(n == 3)

    await eventually(archived, timeout=30, what="the user's events archived")
    since = await end_offsets(stack.kafka_bootstrap, topics.USERS)

    writer = {"X-API-Key": stack.api_keys["writer"]}
    assert (await raw.delete(f"/v1/users/{user}", headers=writer)).status_code == 403
    r = await raw.delete(f"/v1/users/{user}")
    assert r.status_code == 202, r.text
    assert r.json() == {
        "erased": True,
        "user_id": user,
        "orders_anonymised": 1,
        "interactions_deleted": 2,
        "users_deleted": 1,
    }
    again = await raw.delete(f"/v1/users/{user}")  # idempotent
    assert again.json()["interactions_deleted"] == 0

    assert await db.fetchval("SELECT count(*) FROM users WHERE user_id = $1", user) == 0
    assert (
        await db.fetchval("SELECT count(*) FROM user_product_interactions WHERE user_id = $1", user)
        == 0
    )
    assert await db.fetchval("SELECT count(*) FROM erased_users WHERE user_id = $1", user) == 1
    assert await db.fetchval("SELECT user_id FROM orders WHERE order_id = $1", f"{tag}-o") == (
        "erased user"
    )
    # the other user is untouched
    assert (
        await db.fetchval(
            "SELECT count(*) FROM user_product_interactions WHERE user_id = $1", other
        )
        == 1
    )
    published = [decode(r.value) for r in await read_since(stack.kafka_bootstrap, since)]
    erasures = [r for r in published if isinstance(r, UserErased) and r.user_id == user]
    assert len(erasures) == 2
    stored = json.dumps([e.model_dump(mode="json") for e in erasures])
    assert "someone@example.com" not in stored
