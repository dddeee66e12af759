"""What reads leave in Redis, and how fast catalog changes reach cached answers (issue 17,
points 4 and 12), on the session's stack.

- Recommendations for user ids Redis knows nothing about (single and batch) store nothing per
  user: no cached answer, no record of what was shown.
- A product deactivated leaves the next answer, and re-activated comes back in the next one,
  although answers are cached for ``cache_ttl_s`` (300 s): the catalog's availability version
  is part of the cache field.
- Every key that carries a TTL is a cache; state keys carry none (under the deployments'
  ``volatile-lru`` only caches may be evicted).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from streamrec_client import AsyncStreamrecClient
from streamrec_dev import synthetic
from streamrec_dev.localstack.stack import StackDescription
from streamrec_shared.feedback import shown_key
from streamrec_shared.profile import profile_key, rec_cache_key

from ..polling import eventually
from .test_recommender_stack import EVENT_TIME, N_PRODUCTS, ids
from .test_recommender_stack import served as served  # the module's model (a fixture)

pytestmark = [pytest.mark.stack]

CACHE_PREFIXES = ("sr:rc:", "sr:rs:", "sr:re:", "sr:on:", "sr:ae:", "sr:ah:", "sr:ac:")
"""Keys that are caches or bounded-time records: each must carry a TTL."""


@pytest_asyncio.fixture(loop_scope="session")
async def redis(stack: StackDescription) -> Any:
    client = Redis.from_url(stack.redis_url)
    try:
        yield client
    finally:
        await client.aclose()


async def _known_user(client: AsyncStreamrecClient, redis: Redis, tag: str) -> str:
    """A user with a profile (one view)."""
    user = f"{tag}-{uuid.uuid4().hex[:8]}"
    await client.send_event(
        {"event_id": f"{user}-v", "user_id": user, "event_type": "view",
         "product_id": "p000001", "timestamp": EVENT_TIME}
    )  # fmt: skip

    async def profiled() -> bool | None:
        return True if await redis.exists(profile_key(user)) else None

    await eventually(profiled, timeout=15, what="the known user's profile")
    return user


async def _keys(redis: Redis, pattern: str) -> list[bytes]:
    return [k async for k in redis.scan_iter(match=pattern, count=1000)]


async def test_unknown_users_leave_nothing_in_redis(
    client: AsyncStreamrecClient, served: int, redis: Redis
) -> None:
    known = await _known_user(client, redis, "reads-known")
    tag = f"anon-{uuid.uuid4().hex[:8]}"
    for i in range(50):
        rec = await client.recommendations(f"{tag}-{i}", k=10)
        assert rec["items"], rec
    batch = await client.request(
        "POST",
        "recommender",
        "/v1/recommendations/batch",
        json={"user_ids": [f"{tag}-b{i}" for i in range(100)], "k": 10},
    )
    assert len(batch["results"]) == 100
    # The known user's answer is flushed with the same buffers: once its keys are there, so
    # would be the unknown users'.
    await client.recommendations(known, k=10)

    async def flushed() -> bool | None:
        return True if await redis.exists(shown_key(known), rec_cache_key(known)) == 2 else None

    await eventually(flushed, timeout=15, what="the recommender's flush of the known user")
    assert await _keys(redis, f"*{tag}*") == []


async def test_catalog_changes_reach_cached_answers_both_ways(
    client: AsyncStreamrecClient, served: int, redis: Redis
) -> None:
    user = await _known_user(client, redis, "reads-cache")
    first = await client.recommendations(user, k=20, algorithm="als")
    target = ids(first)[0]
    product = next(p for p in synthetic.catalog(N_PRODUCTS) if p["product_id"] == target)

    async def cached_without() -> bool | None:
        rec = await client.recommendations(user, k=20, algorithm="als")
        return True if rec["cached"] and target not in ids(rec) else None

    await client.put_product(target, {**product, "active": False})
    try:
        # the answer without the product is cached ...
        await eventually(cached_without, timeout=15, what="a cached answer without the product")
    finally:
        await client.put_product(target, product)

    async def back() -> bool | None:  # ... yet the re-activated product is back long before
        rec = await client.recommendations(user, k=20, algorithm="als")  # its TTL (300 s)
        return True if target in ids(rec) else None

    await eventually(back, timeout=15, what="the re-activated product in the next answer")


async def test_only_caches_carry_a_ttl(
    client: AsyncStreamrecClient, served: int, redis: Redis
) -> None:
    policy = await redis.config_get("maxmemory-policy")
    assert policy == {"maxmemory-policy": "volatile-lru"}  # as deployed (deploy/k8s)
    await _known_user(client, redis, "reads-ttl")
    state, caches = 0, 0
    async for key in redis.scan_iter(match="sr:*", count=1000):
        name = key.decode()
        ttl = await redis.ttl(key)
        if name.startswith(CACHE_PREFIXES):
            caches += 1
            assert ttl > 0 or ttl == -2, f"cache key {name} has no TTL"  # -2: expired since
        else:
            state += 1
            assert ttl in (-1, -2), f"state key {name} has a TTL ({ttl} s): evictable"
    assert state, "no state key seen"
    assert caches, "no cache key seen"
