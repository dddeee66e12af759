"""A record Postgres rejects never stalls the archive (README fault matrix).

Written straight to ``events.v1`` with a raw Kafka producer, bypassing ingest (which refuses
it), as an older ingest or another producer could have: an event whose ``session_id`` holds a
NUL, which Postgres text cannot store, between valid events of the same user (so of the same
partition, before and after it). The running trainer archives the valid ones, dead-letters the
bad one to ``events.dlq.v1`` with its reason and source in the headers, and counts it in
``streamrec_trainer_archive_dead_letters_total``.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from streamrec_dev.localstack.stack import StackDescription
from streamrec_shared import topics
from streamrec_shared.events import encode

from ..archive import archived_ids, raw_view, wait_archived
from ..ingest.probe import end_offsets, read_since
from ..polling import eventually

pytestmark = [pytest.mark.stack, pytest.mark.slow]

REASON = "character_not_in_repertoire"  # Postgres: invalid byte sequence for UTF8: 0x00


async def _dead_letters(stack: StackDescription) -> float:
    """``streamrec_trainer_archive_dead_letters_total{topic="events.v1", reason=REASON}``."""
    async with httpx.AsyncClient(timeout=5.0) as http:
        text = (await http.get(stack.urls["trainer"] + "/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "streamrec_trainer_archive_dead_letters_total" and sample.labels == {
                "topic": topics.EVENTS,
                "reason": REASON,
            }:
                return float(sample.value)
    return 0.0


async def test_a_record_postgres_rejects_is_dead_lettered_and_the_rest_archived(
    stack: StackDescription,
) -> None:
    tag = f"dl{uuid.uuid4().hex[:8]}"
    before = [raw_view(tag, n) for n in range(5)]
    bad = raw_view(tag, 5, session_id="s\x00nul")
    after = [raw_view(tag, n) for n in range(6, 11)]
    counted = await _dead_letters(stack)
    dlq_from = await end_offsets(stack.kafka_bootstrap, topics.DEAD_LETTER)

    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for event in [*before, bad, *after]:  # one key: one partition, in this order
            await producer.send_and_wait(topics.EVENTS, encode(event), key=event.user_id.encode())
    finally:
        await producer.stop()

    valid = [e.event_id for e in [*before, *after]]
    found = await wait_archived(stack.postgres_dsn, valid, what="the events after the bad one")
    assert found == dict.fromkeys(valid, 1)
    assert await archived_ids(stack.postgres_dsn, [bad.event_id]) == {}

    await eventually(
        lambda: _dead_letters(stack),
        lambda n: n >= counted + 1,
        timeout=30,
        what="the archive's dead-letter counter",
    )
    dead = await read_since(stack.kafka_bootstrap, dlq_from)
    ours = [
        dict(r.headers)
        for r in dead
        if r.value
        and bad.event_id.encode() in r.value
        and dict(r.headers)["reason"] == REASON.encode()
    ]
    assert ours, [dict(r.headers) for r in dead]
    headers = ours[0]
    assert headers["source_topic"].decode() == topics.EVENTS
    assert b"0x00" in headers["error"]
