"""The stream processor on the real broker and Redis (the session's local stack).

Run while other services are unfinished with
``STREAMREC_TEST_SERVICES=ingest,stream-processor uv run pytest tests/stream_processor -q``.
Events go through ingest (``POST /v1/events``); the processor's results are read from Redis.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis.asyncio import Redis

from streamrec_client import AsyncStreamrecClient
from streamrec_dev.localstack.processes import Proc, free_port, kill, spawn, stop
from streamrec_dev.localstack.stack import LocalStack, StackDescription
from streamrec_shared import topics
from streamrec_shared.profile import (
    UNAVAILABLE,
    ProfileReader,
    profile_key,
    rec_cache_key,
)

from ..polling import eventually

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(600)]

PRODUCTS = [f"sp-p{i}" for i in range(30)]


# --- helpers ----------------------------------------------------------------------------------


async def scrape(url: str) -> str:
    async with httpx.AsyncClient(timeout=3.0) as http:
        return (await http.get(url + "/metrics")).text


def metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{", 1)[0] != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


async def readyz(url: str) -> dict[str, Any] | None:
    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            r = await http.get(url + "/readyz")
    except httpx.HTTPError:
        return None
    body: dict[str, Any] = r.json()
    return body if r.status_code == 200 else None


async def event_partitions(url: str) -> list[int]:
    body = await readyz(url)
    if body is None:
        return []
    parts: list[int] = body["checks"]["partitions"].get(topics.EVENTS, [])
    return parts


async def counts_in_redis(redis: Redis, users: list[str]) -> dict[str, int]:
    reader = ProfileReader(redis)
    got = await reader.get_profiles(users)
    return {u: (got[u].event_count if u in got else 0) for u in users}


def spawn_worker(local_stack: LocalStack, name: str) -> tuple[Proc, str]:
    """One more processor worker of the stack's consumer group, on its own HTTP port."""
    desc = local_stack.desc
    assert desc is not None
    port = free_port()
    env = {**os.environ, **desc.env(), "STREAMREC_HTTP__PORT": str(port)}
    proc = spawn(
        name,
        [sys.executable, "-m", "streamrec_stream_processor.main"],
        log_dir=local_stack.log_dir,
        env=env,
    )
    return proc, f"http://127.0.0.1:{port}"


def make_events(prefix: str, n_users: int, n: int, start: int = 0) -> list[dict[str, Any]]:
    kinds = ["view", "view", "click", "add_to_cart", "purchase", "view", "rating"]
    out = []
    for i in range(start, start + n):
        kind = kinds[i % len(kinds)]
        e: dict[str, Any] = {
            "event_id": f"{prefix}-{i}",
            "user_id": f"{prefix}-u{i % n_users}",
            "event_type": kind,
            "product_id": PRODUCTS[(i * 7) % len(PRODUCTS)],
            "timestamp": 1_700_000_000 + i,
        }
        if kind == "rating":
            e["value"] = 4
        out.append(e)
    return out


def expected_counts(sent: list[dict[str, Any]]) -> dict[str, int]:
    ids: dict[str, set[str]] = defaultdict(set)
    for e in sent:
        ids[e["user_id"]].add(e["event_id"])
    return {u: len(v) for u, v in ids.items()}


@pytest_asyncio.fixture(loop_scope="session")
async def redis(stack: StackDescription) -> AsyncIterator[Redis]:
    client = Redis.from_url(stack.redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest_asyncio.fixture(loop_scope="session")
async def processor_ready(local_stack: LocalStack, stack: StackDescription) -> str:
    """The stack's processor URL once it is ready and owns every events.v1 partition."""
    if "stream-processor" not in {p.name for p in stack.procs}:
        pytest.skip("the stream-processor is not part of this test session's stack")
    url = stack.urls["stream-processor"]
    await asyncio.to_thread(local_stack.wait_ready, "stream-processor", timeout=120)

    async def owns_all() -> bool:
        return len(await event_partitions(url)) > 0

    await eventually(owns_all, timeout=60, what="partition assignment")
    return url


async def send_all(client: AsyncStreamrecClient, events: list[dict[str, Any]], size: int) -> None:
    for lo in range(0, len(events), size):
        res = await client.send_events(events[lo : lo + size])
        assert res["accepted"] == len(events[lo : lo + size])


# --- tests ------------------------------------------------------------------------------------
async def test_event_updates_profile_trending_and_invalidates_cache(
    client: AsyncStreamrecClient, redis: Redis, processor_ready: str
) -> None:
    user = f"sp-{uuid.uuid4().hex[:8]}"
    await client.put_products(
        [{"product_id": p, "name": p, "category": "sp-cat", "price": 3.0} for p in PRODUCTS[:3]]
    )
    reader = ProfileReader(redis)

    async def catalogued() -> bool:
        # catalog.v1 and events.v1 are separate streams: per-category trending needs the
        # product's category first (an event that overtakes it is held out of the lists)
        return len(await reader.get_products(PRODUCTS[:3])) == 3

    await eventually(catalogued, timeout=20, what="the catalog records", interval=0.02)
    await redis.hset(rec_cache_key(user), "k=10", "stale recommendations")
    started = time.monotonic()
    await client.send_events(
        [
            {"user_id": user, "event_type": "view", "product_id": PRODUCTS[0]},
            {"user_id": user, "event_type": "purchase", "product_id": PRODUCTS[1]},
        ]
    )

    async def visible() -> bool:
        p = await reader.get_profile(user)
        return p is not None and p.event_count == 2

    await eventually(visible, timeout=20, what="the profile", interval=0.02)
    print(f"event -> profile visible after {time.monotonic() - started:.3f}s")
    p = await reader.get_profile(user)
    assert p is not None
    assert p.purchase_history == (PRODUCTS[1],)
    assert p.view_history == (PRODUCTS[0],)
    assert p.items[0] == PRODUCTS[1]
    assert not await redis.exists(rec_cache_key(user))
    trending = dict(await reader.top_trending(100, "sp-cat"))
    assert PRODUCTS[1] in trending
    text = await scrape(processor_ready)
    assert metric_sum(text, "streamrec_processor_events_total", outcome="applied") >= 2
    assert metric_sum(text, "streamrec_processor_freshness_seconds_count") >= 2
    assert 'streamrec_processor_consumer_lag_messages{partition="' in text


async def test_catalog_deactivation_becomes_visible(
    client: AsyncStreamrecClient, redis: Redis, processor_ready: str
) -> None:
    pid = f"sp-del-{uuid.uuid4().hex[:8]}"
    await client.put_product(pid, {"name": pid, "category": "sp-cat", "price": 1.0})
    reader = ProfileReader(redis)

    async def known() -> bool:
        return pid in await reader.get_products([pid])

    await eventually(known, timeout=20, what="the product in sr:catalog", interval=0.02)
    version = await reader.unavailable_version()
    started = time.monotonic()
    await client.delete_product(pid)

    async def unavailable() -> bool:
        return bool(await redis.sismember(UNAVAILABLE, pid))

    await eventually(unavailable, timeout=20, what="the deactivation", interval=0.01)
    print(f"deactivation visible after {time.monotonic() - started:.3f}s")
    changed = await reader.unavailable_if_changed(version)
    assert changed is not None
    assert pid in changed[1]


async def test_poison_message_goes_to_dead_letter_topic(
    stack: StackDescription, client: AsyncStreamrecClient, redis: Redis, processor_ready: str
) -> None:
    marker = f"sp-poison-{uuid.uuid4().hex[:8]}"
    before = metric_sum(await scrape(processor_ready), "streamrec_processor_dead_letters_total")
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topics.EVENTS, key=marker.encode(), value=b"{not json")
        await producer.send_and_wait(
            topics.EVENTS, key=marker.encode(), value=b'{"kind":"event","user_id":"x"}'
        )
    finally:
        await producer.stop()
    user = f"{marker}-after"
    await client.send_event({"user_id": user, "event_type": "view", "product_id": PRODUCTS[0]})

    async def counted() -> bool:
        text = await scrape(processor_ready)
        return metric_sum(text, "streamrec_processor_dead_letters_total") >= before + 2

    await eventually(counted, timeout=30, what="the dead-letter metric")

    async def still_working() -> bool:
        return await redis.exists(profile_key(user)) == 1

    await eventually(still_working, timeout=30, what="the next event after the poison")
    consumer = AIOKafkaConsumer(
        topics.DEAD_LETTER,
        bootstrap_servers=stack.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    found: list[dict[str, bytes]] = []

    async def dead_letters() -> list[dict[str, bytes]]:
        batches = await consumer.getmany(timeout_ms=500)
        mine = (r for records in batches.values() for r in records if r.key == marker.encode())
        found.extend(dict(r.headers) for r in mine)
        return found

    try:
        await eventually(
            dead_letters, lambda f: len(f) >= 2, timeout=20, what="the two dead letters", interval=0
        )
    finally:
        await consumer.stop()
    assert len(found) == 2
    assert {h["source_topic"] for h in found} == {topics.EVENTS.encode()}
    assert {h["reason"] for h in found} == {b"invalid"}


async def test_sigkill_mid_stream_counts_every_event_once(
    local_stack: LocalStack, client: AsyncStreamrecClient, redis: Redis, processor_ready: str
) -> None:
    prefix = f"sp-kill-{uuid.uuid4().hex[:6]}"
    n_users = 40
    events = make_events(prefix, n_users, 3000)
    # every 10th batch is sent twice (a client retry with the same event ids)
    batches = [events[i : i + 50] for i in range(0, len(events), 50)]
    sent: list[dict[str, Any]] = []
    killed = asyncio.Event()

    async def produce() -> None:
        for i, batch in enumerate(batches):
            res = await client.send_events(batch)
            assert res["accepted"] == len(batch)
            sent.extend(batch)
            if i % 10 == 5:
                await client.send_events(batch)
                sent.extend(batch)
            if i == len(batches) // 3:
                killed.set()
            await asyncio.sleep(0.02)

    producing = asyncio.create_task(produce())
    await killed.wait()
    # wait until the processor is visibly mid-stream, then SIGKILL it
    users = [f"{prefix}-u{i}" for i in range(n_users)]

    async def mid_stream() -> bool:
        return sum((await counts_in_redis(redis, users)).values()) > 0

    await eventually(mid_stream, timeout=30, what="processing to start")
    await asyncio.to_thread(kill, local_stack.proc("stream-processor"))
    await asyncio.sleep(1.0)  # events keep flowing into the broker meanwhile
    local_stack.start_service("stream-processor")
    await producing
    await asyncio.to_thread(local_stack.wait_ready, "stream-processor", timeout=120)
    want = expected_counts(sent)
    assert sum(want.values()) == len(events)  # the resent batches add no distinct ids

    async def complete() -> bool:
        return await counts_in_redis(redis, users) == want

    await eventually(complete, timeout=120, what="all events counted", interval=0.5)
    # the restarted worker re-read events the killed one had applied (uncommitted offsets) or
    # resent ids: they were recognised as duplicates, and stay so
    text = await scrape(processor_ready)
    assert metric_sum(text, "streamrec_processor_events_total", outcome="duplicate") > 0
    await asyncio.sleep(2.0)
    assert await counts_in_redis(redis, users) == want


async def test_two_workers_split_partitions_and_totals_are_exact(
    local_stack: LocalStack, client: AsyncStreamrecClient, redis: Redis, processor_ready: str
) -> None:
    first = processor_ready
    proc, second = spawn_worker(local_stack, "stream-processor-2")
    try:

        async def split() -> bool:
            a, b = await event_partitions(first), await event_partitions(second)
            return bool(a) and bool(b) and not set(a) & set(b) and len(a) + len(b) == 6

        await eventually(split, timeout=90, what="two workers sharing events.v1", interval=0.5)
        a, b = await event_partitions(first), await event_partitions(second)
        print(f"worker 1 owns {a}, worker 2 owns {b}")
        prefix = f"sp-two-{uuid.uuid4().hex[:6]}"
        n_users = 60
        events = make_events(prefix, n_users, 2400)
        await send_all(client, events, 200)
        users = [f"{prefix}-u{i}" for i in range(n_users)]
        want = expected_counts(events)

        async def complete() -> bool:
            return await counts_in_redis(redis, users) == want

        await eventually(complete, timeout=120, what="both workers' events", interval=0.5)
        text_a, text_b = await scrape(first), await scrape(second)
        assert metric_sum(text_b, "streamrec_processor_events_total", outcome="applied") > 0
        assert metric_sum(text_a, "streamrec_processor_events_total") > 0
        # the second worker leaves: the first takes every partition over, totals stay exact
        await asyncio.to_thread(stop, proc)

        async def alone() -> bool:
            return len(await event_partitions(first)) == 6

        await eventually(alone, timeout=90, what="the first worker owning all", interval=0.5)
        more = make_events(prefix, n_users, 600, start=len(events))
        await send_all(client, more, 200)
        want = expected_counts(events + more)
        await eventually(complete, timeout=120, what="events after the rebalance", interval=0.5)
    finally:
        await asyncio.to_thread(stop, proc)


async def test_event_then_recommendation_reflects_it(
    stack: StackDescription, client: AsyncStreamrecClient, processor_ready: str
) -> None:
    if "recommender" not in {p.name for p in stack.procs}:
        pytest.skip("needs the recommender in the stack")
    await client.put_products(
        [{"product_id": p, "name": p, "category": "sp-rec", "price": 2.0} for p in PRODUCTS]
    )
    warm = f"sp-warm-{uuid.uuid4().hex[:8]}"
    await client.send_events(
        [{"user_id": warm, "event_type": "view", "product_id": p} for p in PRODUCTS[:15]]
    )
    user = f"sp-rec-{uuid.uuid4().hex[:8]}"
    first: dict[str, Any] = {}

    async def has_items() -> bool:
        nonlocal first
        first = await client.recommendations(user, k=10)
        return bool(first["items"])

    await eventually(has_items, timeout=30, what="cold-start recommendations", interval=0.25)
    bought = first["items"][0]["product_id"]
    await client.send_event({"user_id": user, "event_type": "purchase", "product_id": bought})
    latest: dict[str, Any] = {}

    async def reflected() -> bool:
        nonlocal latest
        latest = await client.recommendations(user, k=10)
        return bought not in [i["product_id"] for i in latest["items"]]

    await eventually(reflected, timeout=10, what="a recommendation without the purchase")

    # the answer may reflect the purchase before the processor has applied it (ingest's
    # read-your-writes list); the profile, which the processor owns, follows
    async def applied() -> dict[str, Any] | None:
        got: dict[str, Any] = await client.request(
            "GET", "recommender", f"/v1/users/{user}/profile"
        )
        return got if got["event_count"] else None

    profile = await eventually(applied, timeout=10, what="the purchase in the profile")
    assert profile["event_count"] == 1
    assert bought in profile["purchase_history"]
    assert re.match(r".+", str(latest.get("strategy", "")))


async def test_a_resent_event_counts_once_after_twenty_newer_events(
    client: AsyncStreamrecClient, redis: Redis, processor_ready: str
) -> None:
    """A client re-sends an accepted event (same event id: ingest publishes it again, at a new
    offset) after 20 newer events of the same user, more than the 16 event ids a profile keeps:
    the profile counts it once (the user's event-id set in Redis recognises it)."""
    tag = f"rs{uuid.uuid4().hex[:8]}"
    user = f"{tag}-u0"
    events = make_events(tag, 1, 21)  # one user: its first event and 20 newer ones
    await send_all(client, events[:1], 1)
    await send_all(client, events[1:], 20)
    await eventually(
        lambda: counts_in_redis(redis, [user]),
        lambda got: got[user] == 21,
        timeout=30,
        what="the 21 events in the profile",
    )
    await send_all(client, events[:1], 1)  # the client's re-send
    marker = make_events(tag, 1, 1, start=21)
    await send_all(client, marker, 1)  # after the re-send in the user's partition
    reader = ProfileReader(redis)

    async def marker_applied() -> bool:
        profile = await reader.get_profile(user)
        return profile is not None and profile.view_history[:1] == (marker[0]["product_id"],)

    # the marker is a view of a product no earlier event viewed last: once it heads the view
    # history, the re-send before it in the partition has been handled too
    assert marker[0]["event_type"] == "view"
    await eventually(marker_applied, timeout=30, what="the marker event after the re-send")
    assert (await counts_in_redis(redis, [user]))[user] == 22
