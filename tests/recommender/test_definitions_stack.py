"""Campaigns and experiments live in Postgres; Redis and memory are only caches.

The recommender app runs in-process on a private Redis and a private Postgres (this module's:
FLUSHALL touches nobody else), through its HTTP API: what an admin created survives a flush of
Redis and a pod restart, and a pod whose Postgres is down serves the cached copy and refuses
writes with a 503.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
from pydantic import SecretStr
from redis.asyncio import Redis

from streamrec_dev.synthetic_model import make_bundle
from streamrec_recommender.adapters import campaigns, experiments
from streamrec_recommender.api.app import create_app, with_fast_path
from streamrec_recommender.runtime.model_handle import prepare
from streamrec_recommender.settings import RecommenderSettings
from streamrec_shared.postgres import create_pool
from streamrec_shared.settings import PostgresSettings

from ..polling import eventually

TARGET = "p000123"
EXPERIMENT = {
    "variants": [{"name": "ctl", "algorithm": "als", "weight": 1},
                 {"name": "pop", "algorithm": "popular", "weight": 1}],
    "status": "running",
}  # fmt: skip


def _settings(redis_url: str, dsn: str) -> RecommenderSettings:
    s = RecommenderSettings()
    s.redis.url = SecretStr(redis_url)
    s.postgres.dsn = SecretStr(dsn)
    s.kafka.bootstrap_servers = "127.0.0.1:9"  # no broker: the model is installed directly
    s.recommender.campaigns_refresh_s = 0.2
    s.recommender.experiments_refresh_s = 0.2
    s.recommender.cache_ttl_s = 1
    return s


@asynccontextmanager
async def _pod(settings: RecommenderSettings) -> AsyncIterator[httpx.AsyncClient]:
    """One recommender pod (a model installed, no broker), as uvicorn would serve it."""
    model = prepare(make_bundle(n_items=200, n_users=50), settings.recommender)
    app = create_app(settings, model=model, watch_models=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=with_fast_path(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://rec") as c:
            yield c


async def _effective(c: httpx.AsyncClient, user: str) -> bool | None:
    """Both definitions shape the answer: the boosted product first, an experiment named."""
    r = await c.get(f"/v1/recommendations/{user}", params={"k": 5})
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    top = [i["product_id"] for i in body["items"]][:1]
    experiment = (body.get("experiment") or {}).get("name")
    return True if top == [TARGET] and experiment == "exp1" else None


async def _listed(c: httpx.AsyncClient) -> tuple[list[str], int]:
    names = [x["name"] for x in (await c.get("/v1/campaigns")).json()["campaigns"]]
    return names, (await c.get("/v1/experiments/exp1")).status_code


async def _empty(dsn: str) -> None:
    """Migrated, without definitions, and as if no pod had started since the upgrade."""
    pool = await create_pool(PostgresSettings(dsn=dsn, max_size=1))  # migrates
    await pool.execute("TRUNCATE campaigns, experiments, definition_adoptions")
    await pool.close()


async def test_campaigns_and_experiments_survive_a_redis_flush(
    private_redis: str, private_postgres: str
) -> None:
    await _empty(private_postgres)
    redis = Redis.from_url(private_redis)
    await redis.flushall()
    settings = _settings(private_redis, private_postgres)
    now = time.time()
    campaign = {"boost": 10.0, "start": now - 60, "end": now + 3600, "product_ids": [TARGET]}
    try:
        async with _pod(settings) as c:
            assert (await c.put("/v1/campaigns/promo", json=campaign)).status_code == 200
            assert (await c.put("/v1/experiments/exp1", json=EXPERIMENT)).status_code == 200
            await eventually(lambda: _effective(c, "user-a"), timeout=10, what="both in effect")

            await redis.flushall()
            # the running pod keeps them, and puts the Redis copy back from Postgres
            await eventually(lambda: _effective(c, "user-b"), timeout=10, what="after a flush")

            async def recached() -> bool | None:
                ok = await redis.hlen(campaigns.REDIS_KEY) == 1
                return True if ok and await redis.hlen(experiments.REDIS_KEY) == 1 else None

            await eventually(recached, timeout=10, what="the Redis copies rebuilt")

        await redis.flushall()
        async with _pod(settings) as c:  # a pod started after the flush loads them
            assert await _listed(c) == (["promo"], 200)
            await eventually(lambda: _effective(c, "user-c"), timeout=10, what="after a restart")

        down = _settings(private_redis, "postgresql://x@127.0.0.1:9/x")
        async with _pod(down) as c:  # Postgres down: served from the Redis copy, no writes
            assert await _listed(c) == (["promo"], 200)
            await eventually(lambda: _effective(c, "user-d"), timeout=10, what="from the cache")
            r = await c.put("/v1/campaigns/other", json=campaign)
            assert r.status_code == 503
            assert "Retry-After" in r.headers
            assert (await c.delete("/v1/campaigns/promo")).status_code == 503

        async with _pod(settings) as c:  # DELETE removes it from Postgres and the cache
            assert (await c.delete("/v1/campaigns/promo")).status_code == 200
            assert (await c.get("/v1/campaigns")).json()["campaigns"] == []
            assert await redis.hlen(campaigns.REDIS_KEY) == 0
    finally:
        await redis.flushall()
        await redis.aclose()


async def test_campaigns_of_the_redis_only_era_are_adopted_once(
    private_redis: str, private_postgres: str
) -> None:
    """Before migration 0007 campaigns lived in Redis only: the first pod after the upgrade
    copies them into Postgres, so the upgrade loses none and a later flush neither."""
    await _empty(private_postgres)
    redis = Redis.from_url(private_redis)
    await redis.flushall()
    now = time.time()
    old = {"name": "legacy", "boost": 10.0, "start": now - 60, "end": now + 3600,
           "product_ids": [TARGET], "categories": [], "segment": None, "enabled": True}  # fmt: skip
    await redis.hset(campaigns.REDIS_KEY, "legacy", json.dumps(old))
    settings = _settings(private_redis, private_postgres)
    try:
        async with _pod(settings) as c:
            assert (await _listed(c))[0] == ["legacy"]
            assert (await c.delete("/v1/campaigns/legacy")).status_code == 200
        conn = await asyncpg.connect(private_postgres)
        try:
            assert await conn.fetchval("SELECT count(*) FROM campaigns") == 0
        finally:
            await conn.close()
        await redis.hset(campaigns.REDIS_KEY, "legacy", json.dumps(old))  # a stale copy
        async with _pod(settings) as c:  # adopted once only: Postgres stays the truth
            assert (await _listed(c))[0] == []
            await eventually(lambda: _gone(redis), timeout=10, what="the stale copy replaced")
    finally:
        await redis.flushall()
        await redis.aclose()


async def _gone(redis: Redis) -> bool | None:
    return True if await redis.hlen(campaigns.REDIS_KEY) == 0 else None
