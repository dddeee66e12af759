"""Redis restarts EMPTY (no snapshot) under a private stack: the processor notices (``sr:epoch``),
replays the topics into it, and the recommender answers 200 throughout.

Before the epoch, the processor kept its cached product codes and wrote profiles whose codes the
new dictionary gave to other products, and the deactivated-product set was simply gone.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from streamrec_dev.localstack import infra
from streamrec_dev.localstack.processes import kill
from streamrec_dev.localstack.stack import LocalStack, StackDescription
from streamrec_shared.profile import EPOCH, UNAVAILABLE, ProfileReader

from ..polling import eventually

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(600)]

PRODUCTS = [f"rl-p{i:02d}" for i in range(12)]
HOT = PRODUCTS[0]
"""Viewed by every user (top of trending), then deactivated."""
USERS = {f"rl-u{u}": [HOT, *PRODUCTS[1 + u : 4 + u]] for u in range(5)}


@pytest.fixture(scope="module")
def private(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalStack, StackDescription]]:
    stack = LocalStack(Path(tmp_path_factory.mktemp("redis-loss")), triggers=False)
    desc = stack.start(services=("ingest", "stream-processor", "recommender"))
    try:
        for name in ("ingest", "stream-processor", "recommender"):
            stack.wait_ready(name, timeout=90)
        yield stack, desc
    finally:
        stack.stop()


def _restart_redis_empty(stack: LocalStack, desc: StackDescription) -> None:
    kill(stack.proc("redis"))
    port = int(desc.redis_url.rsplit(":", 1)[1].split("/")[0])
    fresh = Path(desc.state_dir) / f"redis-{uuid.uuid4().hex[:6]}"  # no snapshot to load
    stack._record(infra.start_redis(port, fresh, stack.log_dir))


async def _resolved(redis: Redis) -> bool | None:
    """Every user's profile names exactly the products they viewed, and HOT is unavailable."""
    profiles = await ProfileReader(redis).get_profiles(list(USERS))
    if set(profiles) != set(USERS):
        return None
    for user, viewed in USERS.items():
        if set(profiles[user].view_history) != set(viewed):
            return None
    return True if await redis.sismember(UNAVAILABLE, HOT) else None


async def test_redis_restarted_empty_is_rebuilt(
    private: tuple[LocalStack, StackDescription],
) -> None:
    stack, desc = private
    statuses: list[tuple[float, int, list[str]]] = []
    stop = asyncio.Event()

    async def ask() -> None:  # a known and an unknown user, all along
        async with httpx.AsyncClient(base_url=desc.urls["recommender"], timeout=5.0) as http:
            while not stop.is_set():
                for user in ("rl-u0", f"rl-new-{uuid.uuid4().hex[:6]}"):
                    r = await http.get(f"/v1/recommendations/{user}", params={"k": 12})
                    items = [i["product_id"] for i in r.json()["items"]] if r.is_success else []
                    statuses.append((time.monotonic(), r.status_code, items))
                await asyncio.sleep(0.05)

    async with desc.client() as client:
        await client.put_products(
            {"product_id": p, "name": f"product {p}", "category": "rl", "price": 1.0}
            for p in PRODUCTS
        )
        await client.send_events(
            {"user_id": u, "event_type": "view", "product_id": p}
            for u, viewed in USERS.items()
            for p in viewed
        )
        await client.put_products(
            [{"product_id": HOT, "name": f"product {HOT}", "category": "rl", "price": 1.0,
              "active": False}]
        )  # fmt: skip
        redis = Redis.from_url(desc.redis_url)
        try:
            await eventually(lambda: _resolved(redis), timeout=60, what="profiles and catalog")
            epoch_before = await redis.hget(EPOCH, "id")
            asker = asyncio.create_task(ask())
            await asyncio.sleep(1.0)
            await asyncio.to_thread(_restart_redis_empty, stack, desc)
            await redis.aclose()
            redis = Redis.from_url(desc.redis_url)  # the old connection died with the server
            # new products and events after the loss: the new dictionary numbers them first,
            # so profiles written with the old cached codes would name the wrong products
            fresh = [f"rl-q{i}" for i in range(6)]
            await client.put_products(
                {"product_id": p, "name": f"product {p}", "category": "rl", "price": 1.0}
                for p in fresh
            )
            await client.send_events(
                {"user_id": "rl-late", "event_type": "view", "product_id": p} for p in fresh
            )
            USERS["rl-late"] = fresh
            await eventually(lambda: _resolved(redis), timeout=90, what="Redis rebuilt")
            assert await redis.hget(EPOCH, "id") != epoch_before

            async def hot_out() -> bool | None:  # the recommender follows the rebuilt state
                rec = await client.recommendations(f"rl-new-{uuid.uuid4().hex[:6]}", k=12)
                items = [i["product_id"] for i in rec["items"]]
                return True if items and HOT not in items else None

            await eventually(hot_out, timeout=30, what="answers without the deactivated product")
            stop.set()
            await asyncio.wait_for(asker, timeout=10)
        finally:
            stop.set()
            await redis.aclose()
    assert statuses, "the recommender was asked during the loss"
    bad = [s for s in statuses if s[1] != 200]
    assert not bad, f"non-200 answers during the Redis loss: {bad[:5]}"
