"""Look at what reached a topic, for the stack tests (no fixed sleeps: deadlines; the archive:
``tests/archive.py``)."""

from __future__ import annotations

import time
from typing import Any, TypeVar

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
