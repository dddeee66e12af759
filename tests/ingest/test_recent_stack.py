"""Read-your-writes: ingest pushes each accepted event to its user's recent-events list (and
drops the user's cached answers) before the 202; with Redis down the 202 comes all the same."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY
from pydantic import SecretStr
from redis.asyncio import Redis

from streamrec_ingest.app import create_app
from streamrec_ingest.fastpath import with_fast_path
from streamrec_shared import recent_events
from streamrec_shared.profile import rec_cache_key
from streamrec_shared.settings import RedisSettings

from .fakes import KEYS, FakeProducer, unit_settings

pytestmark = [pytest.mark.asyncio(loop_scope="session")]


def _redis_up() -> float | None:
    labels = {"service": "ingest", "dependency": "redis"}
    return REGISTRY.get_sample_value("streamrec_dependency_up", labels)


async def _post(app: FastAPI, body: dict[str, object]) -> httpx.Response:
    transport = httpx.ASGITransport(app=with_fast_path(app))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://ingest", headers={"X-API-Key": KEYS["admin"]}
    ) as client:
        return await client.post("/v1/events", json=body)


async def test_accepted_events_are_in_the_list_before_the_202(private_redis: str) -> None:
    redis_settings = RedisSettings(url=SecretStr(private_redis))
    settings = unit_settings().model_copy(update={"redis": redis_settings})
    app = create_app(settings, producer=FakeProducer())
    redis = Redis.from_url(private_redis)
    key = recent_events.recent_events_key("rw-1")
    try:
        await redis.delete(key)
        await redis.hset(rec_cache_key("rw-1"), "f", "stale answer")
        async with app.router.lifespan_context(app):
            events = [
                {"user_id": "rw-1", "event_type": "view", "product_id": "p1", "timestamp": 100},
                {"user_id": "rw-1", "event_type": "remove_from_cart", "product_id": "p1"},
                {"user_id": "rw-1", "event_type": "click", "product_id": "p2", "timestamp": 101},
            ]
            r = await _post(app, {"events": events})
            assert r.status_code == 202, r.text
            found = recent_events.decode_all(await redis.lrange(key, 0, -1))
            assert [(e.product_id, e.event_type, e.ts) for e in found] == [
                ("p2", "click", 101.0),
                ("p1", "view", 100.0),
            ]
            assert 0 < await redis.ttl(key) <= recent_events.TTL_S
            assert _redis_up() == 1.0
            assert not await redis.exists(rec_cache_key("rw-1"))
            many = [
                {"user_id": "rw-1", "event_type": "view", "product_id": f"q{i}"} for i in range(30)
            ]
            assert (await _post(app, {"events": many})).status_code == 202
            assert await redis.llen(key) == recent_events.MAX_EVENTS
            assert recent_events.decode((await redis.lindex(key, 0)) or b"") is not None
    finally:
        await redis.aclose()


async def test_redis_down_never_fails_the_202() -> None:
    app = create_app(unit_settings(), producer=FakeProducer())  # Redis on a closed port
    async with app.router.lifespan_context(app):
        for i in range(3):
            body = {"user_id": "rw-2", "event_type": "view", "product_id": f"p{i}"}
            r = await _post(app, body)
            assert r.status_code == 202, r.text
            assert _redis_up() == 0.0
