"""Look at what reached a topic or Postgres, for the stack tests (no fixed sleeps: deadlines)."""

from __future__ import annotations

import time
from typing import Any, TypeVar

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

T = TypeVar("T")


async def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    """The current end offset of every partition of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
        return ends
    finally:
        await consumer.stop()


async def read_since(
    bootstrap: str, since: dict[TopicPartition, int], within: float = 20.0
) -> list[Any]:
    """Every record appended after the ``since`` offsets (call it after the writes were acked).

    Reads until the reported end offsets are passed and then until the log is quiet (two empty
    polls): the local Tansu broker reports the end offset of a partition as the base offset of
    its last record batch + 1, which is short when that batch holds several records.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
    )
    await consumer.start()
    try:
        tps = list(since)
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, since[tp])
        records: list[Any] = []
        deadline = time.monotonic() + within
        empty_polls = 0
        while True:
            assert time.monotonic() < deadline, "timed out reading the topic"
            batches = await consumer.getmany(timeout_ms=250)
            for messages in batches.values():
                records.extend(messages)
            empty_polls = 0 if batches else empty_polls + 1
            positions = {tp: await consumer.position(tp) for tp in tps}
            if empty_polls >= 2 and all(positions[tp] >= ends[tp] for tp in tps):
                return records
    finally:
        await consumer.stop()


async def archived_ids(dsn: str, event_ids: list[str]) -> dict[str, int]:
    """How many archive rows each of ``event_ids`` has (absent ids: not in the dict)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT event_id, count(*) AS n FROM user_product_interactions"
            " WHERE event_id = ANY($1::text[]) GROUP BY event_id",
            event_ids,
        )
    finally:
        await conn.close()
    return {r["event_id"]: r["n"] for r in rows}
