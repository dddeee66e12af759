"""Exactly-once effect downstream, and the order outbox reconciler.

``test_duplicate_event_ids_are_archived_and_counted_once`` needs the trainer (archive) and the
stream processor (profiles) of the session stack; it is skipped when they were not started
(``STREAMREC_TEST_SERVICES``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from streamrec_client import AsyncStreamrecClient
from streamrec_dev.localstack.stack import LocalStack, StackDescription
from streamrec_ingest.app import create_app
from streamrec_ingest.deps import IngestState
from streamrec_ingest.settings import IngestOptions, IngestSettings
from streamrec_shared import topics
from streamrec_shared.events import decode_event
from streamrec_shared.profile import ProfileReader, UserProfile
from streamrec_shared.settings import KafkaSettings, PostgresSettings

from ..archive import wait_archived
from ..polling import eventually
from .probe import end_offsets, read_since

pytestmark = pytest.mark.stack


def _require(local_stack: LocalStack, *services: str) -> None:
    assert local_stack.desc is not None
    running = {p.name for p in local_stack.desc.procs}
    missing = [s for s in services if s not in running]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} in the stack (STREAMREC_TEST_SERVICES)")


async def test_duplicate_event_ids_are_archived_and_counted_once(
    local_stack: LocalStack, stack: StackDescription, client: AsyncStreamrecClient
) -> None:
    _require(local_stack, "trainer", "stream-processor")
    tag = uuid.uuid4().hex[:10]
    user = f"dup-{tag}"
    first = {
        "event_id": f"{tag}-a",
        "user_id": user,
        "event_type": "view",
        "product_id": "p1",
        "timestamp": 1_750_000_000,
    }
    second = {**first, "event_id": f"{tag}-b", "event_type": "click", "timestamp": 1_750_000_010}
    # a client retry, a duplicate inside a batch, a replay of both
    await client.send_event(first)
    await client.send_event(first)
    await client.send_events([first, second, first])
    await client.send_events([second, first])
    # the last event of this user: once it is applied, every earlier one has been seen
    sentinel = {
        "event_id": f"{tag}-z",
        "user_id": user,
        "event_type": "purchase",
        "product_id": f"{tag}-sentinel",
        "timestamp": 1_750_000_020,
    }
    await client.send_event(sentinel)
    ids = [f"{tag}-a", f"{tag}-b", f"{tag}-z"]

    archived = await wait_archived(
        stack.postgres_dsn, ids, what="the archive to hold the three event ids", timeout=60
    )
    assert archived == {i: 1 for i in ids}

    redis = Redis.from_url(stack.redis_url)
    try:
        reader = ProfileReader(redis)

        async def profile() -> UserProfile | None:
            return await reader.get_profile(user)

        applied = await eventually(
            profile,
            lambda p: p is not None and f"{tag}-sentinel" in p.purchase_history,
            timeout=60,
            what="the processor to apply the sentinel purchase",
        )
    finally:
        await redis.aclose()
    assert applied is not None
    assert applied.event_count == 3
    assert applied.counts["view"] == 1
    assert applied.counts["click"] == 1
    assert applied.counts["purchase"] == 1


@pytest_asyncio.fixture(loop_scope="session")
async def in_process(stack: StackDescription) -> AsyncIterator[IngestState]:
    """A second ingest instance in this process, on the stack's broker and Postgres."""
    settings = IngestSettings(
        kafka=KafkaSettings(
            bootstrap_servers=stack.kafka_bootstrap, enable_idempotence=False, create_topics=False
        ),
        postgres=PostgresSettings(dsn=stack.postgres_dsn, migrate=False),
        ingest=IngestOptions(order_reconcile_interval_s=0, order_reconcile_grace_s=60),
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app.state.ingest


async def test_reconciler_publishes_stored_orders_missing_from_the_archive(
    stack: StackDescription, in_process: IngestState
) -> None:
    """An order committed by an ingest that died before publishing is published later."""
    tag = uuid.uuid4().hex[:10]
    order_id = f"crashed-{tag}"
    conn = await asyncpg.connect(stack.postgres_dsn)
    try:
        async with conn.transaction():
            await conn.execute("INSERT INTO users (user_id) VALUES ($1)", f"{tag}-u")
            await conn.execute(
                "INSERT INTO products (product_id, in_catalog) VALUES ($1, false)", f"{tag}-p"
            )
            await conn.execute(
                "INSERT INTO orders (order_id, user_id, ts, total, created_at)"
                " VALUES ($1, $2, now() - interval '1 hour', 20, now() - interval '5 minutes')",
                order_id,
                f"{tag}-u",
            )
            await conn.execute(
                "INSERT INTO order_items (order_id, line_no, product_id, quantity, price,"
                " event_id) VALUES ($1, 1, $2, 2, 10, $3)",
                order_id,
                f"{tag}-p",
                f"{order_id}:1",
            )
    finally:
        await conn.close()

    since = await end_offsets(stack.kafka_bootstrap, topics.EVENTS)
    republished = await in_process.reconciler.run_once()
    assert republished >= 1
    events = [decode_event(r.value) for r in await read_since(stack.kafka_bootstrap, since)]
    (event,) = [e for e in events if e.event_id == f"{order_id}:1"]
    assert (event.user_id, event.product_id, event.event_type) == (
        f"{tag}-u",
        f"{tag}-p",
        "purchase",
    )
    assert (event.value, event.price) == (2.0, 10.0)
    assert event.context == {"order_id": order_id}
