"""The stream processor dead-letters what the archive cannot store (README fault matrix).

Written straight to ``events.v1`` with a raw Kafka producer, bypassing ingest (which refuses
them with a 422), as an older ingest or another producer could have: events of one user whose
``session_id``, ``rec_id`` or ``context`` hold a NUL, between valid events of that user (so of
the same partition, before and after them). The running processor counts the valid ones in
the user's profile, dead-letters each bad one to ``events.dlq.v1`` with reason ``unstorable``
and the field in its error header, and keeps going: the profile never counts an event the
archive has no row for.
"""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from streamrec_dev.localstack.stack import StackDescription
from streamrec_shared import topics
from streamrec_shared.events import encode
from streamrec_shared.profile import ProfileReader

from ..archive import raw_view
from ..ingest.probe import end_offsets, read_since
from ..polling import eventually

pytestmark = [pytest.mark.stack, pytest.mark.slow]


async def test_an_event_the_archive_cannot_store_is_dead_lettered_not_counted(
    stack: StackDescription,
) -> None:
    tag = f"nul{uuid.uuid4().hex[:8]}"
    before = [raw_view(tag, n) for n in range(4)]
    bad = [
        raw_view(tag, 4, session_id="s\x00nul"),
        raw_view(tag, 5, rec_id="r\x00nul"),
        raw_view(tag, 6, context={"page": {"q": "a\x00b"}}),
    ]
    after = [raw_view(tag, n) for n in range(7, 10)]
    last = raw_view(tag, 10).model_copy(update={"product_id": f"{tag}-last"})
    after.append(last)
    dlq_from = await end_offsets(stack.kafka_bootstrap, topics.DEAD_LETTER)

    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for event in [*before, *bad, *after]:  # one key: one partition, in this order
            await producer.send_and_wait(topics.EVENTS, encode(event), key=event.user_id.encode())
    finally:
        await producer.stop()

    redis = Redis.from_url(stack.redis_url)
    try:
        reader = ProfileReader(redis)

        async def through_the_last() -> int | None:
            """The profile's event count once the last event (after the bad ones) is in."""
            profile = await reader.get_profile(f"{tag}-user")
            if profile is None or last.product_id not in profile.view_history:
                return None
            return profile.event_count

        counted = await eventually(through_the_last, timeout=30, what="the last event applied")
        assert counted == 8  # the three bad ones are not counted
    finally:
        await redis.aclose()

    bad_ids = {e.event_id.encode(): e for e in bad}

    async def dead_letters() -> dict[bytes, dict[str, bytes]]:
        found: dict[bytes, dict[str, bytes]] = {}
        for r in await read_since(stack.kafka_bootstrap, dlq_from):
            headers = dict(r.headers)
            if headers.get("reason") != b"unstorable":
                continue
            for event_id in bad_ids:
                if r.value and b'"event_id":"' + event_id + b'"' in r.value:
                    found[event_id] = headers
        return found

    found = await eventually(
        dead_letters, lambda f: len(f) == len(bad), timeout=30, what="the processor's dead letters"
    )
    for event_id, headers in found.items():
        assert headers["source_topic"].decode() == topics.EVENTS
        field = {b"4": b"session_id", b"5": b"rec_id", b"6": b"context.page.q"}[event_id[-1:]]
        assert headers["error"].startswith(field + b": must not contain NUL"), headers
