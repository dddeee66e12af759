"""The publisher on its own: bounded waits, background start, replacing a dead producer."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from types import SimpleNamespace

import pytest
from aiokafka.errors import KafkaTimeoutError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from streamrec_ingest.publisher import DIRECT_MAX, Publisher, murmur2
from streamrec_shared.errors import RetryableError

from ..polling import eventually
from ..polling import now as _now
from .fakes import FakeBatch, FakeProducer


def _publisher(producers: list[FakeProducer], **kw: float) -> Publisher:
    made = iter(producers)
    return Publisher(
        lambda: next(made),
        timeout_s=kw.get("timeout_s", 0.2),
        retry_after_s=1.0,
        start_retry_s=0.01,
    )


async def test_publish_waits_for_every_ack() -> None:
    producer = FakeProducer(partitions=1)
    publisher = _publisher([producer])
    await publisher.start()
    await publisher.publish("t", [(b"k1", b"v1"), (b"k2", b"v2")])
    assert [(s.topic, s.key, s.value) for s in producer.sent] == [
        ("t", b"k1", b"v1"),
        ("t", b"k2", b"v2"),
    ]
    await publisher.close()
    assert producer.stopped


async def test_concurrent_publishes_share_batches_and_keep_order_per_partition() -> None:
    producer = FakeProducer(partitions=3, batch_capacity=7)
    publisher = _publisher([producer])
    await publisher.start()
    calls = [[(f"u{i % 10}".encode(), f"{c}:{i}".encode()) for i in range(20)] for c in range(5)]
    await asyncio.gather(*(publisher.publish("t", records) for records in calls))
    assert sorted(s.value for s in producer.sent) == sorted(v for r in calls for _, v in r)
    # the calls fill the same batches; a full one rolls over to the next
    per_partition = Counter(s.partition for s in producer.sent)
    assert producer.batches == sum(math.ceil(n / 7) for n in per_partition.values())
    for key in {s.key for s in producer.sent}:
        values = [s.value for s in producer.sent if s.key == key]
        assert values == sorted(values, key=lambda v: tuple(map(int, v.split(b":"))))
    await publisher.close()


async def test_batches_are_closed_when_handed_over() -> None:
    """A closed batch is sent without the producer's linger (kept for single-event sends)."""
    producer = FakeProducer(partitions=2)
    publisher = _publisher([producer])
    await publisher.start()
    handed: list[bool] = []
    send_batch = producer.send_batch

    async def watch(batch: FakeBatch, topic: str, *, partition: int) -> asyncio.Future[None]:
        handed.append(batch.closed)
        return await send_batch(batch, topic, partition=partition)

    producer.send_batch = watch  # type: ignore[method-assign,assignment]
    await publisher.publish("t", [(b"k%d" % i, b"v") for i in range(DIRECT_MAX + 6)])
    assert handed
    assert all(handed)
    assert len(producer.sent) == DIRECT_MAX + 6
    await publisher.close()


async def test_a_failed_hand_over_is_retryable() -> None:
    producer = FakeProducer()
    publisher = _publisher([producer])
    await publisher.start()

    async def refuse(*args: object, **kwargs: object) -> asyncio.Future[None]:
        raise KafkaTimeoutError()

    producer.send_batch = refuse  # type: ignore[method-assign]
    with pytest.raises(RetryableError) as info:
        await publisher.publish("t", [(b"k", b"v")] * (DIRECT_MAX + 1))
    assert "KafkaTimeoutError" in info.value.message
    await publisher.close()


@pytest.mark.parametrize("count", [1, DIRECT_MAX + 1])
async def test_unacknowledged_publish_is_retryable_within_the_bound(count: int) -> None:
    producer = FakeProducer(mode="hang")
    publisher = _publisher([producer], timeout_s=0.2)
    await publisher.start()
    started = time.monotonic()
    with pytest.raises(RetryableError) as info:
        await publisher.publish("t", [(b"k%d" % i, b"v") for i in range(count)])
    assert time.monotonic() - started < 1.0
    assert info.value.retry_after == 1.0
    assert "0.2 s" in info.value.message
    await publisher.close()


async def test_a_producer_whose_sender_died_is_replaced() -> None:
    dead, fresh = FakeProducer(mode="error"), FakeProducer()
    finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    finished.set_result(None)
    dead._sender = SimpleNamespace(sender_task=finished)  # type: ignore[attr-defined]
    publisher = _publisher([dead, fresh])
    await publisher.start()
    with pytest.raises(RetryableError):
        await publisher.publish("t", [(b"k", b"v")])
    await eventually(
        _now(lambda: publisher.started is True and fresh.starts > 0),
        timeout=5,
        what="a new producer",
        interval=0.01,
    )
    await publisher.publish("t", [(b"k", b"v")])
    assert dead.stopped
    assert len(fresh.sent) == 1
    await publisher.close()


async def test_a_failing_producer_with_a_live_sender_is_kept() -> None:
    flaky = FakeProducer(mode="error")
    publisher = _publisher([flaky])
    await publisher.start()
    with pytest.raises(RetryableError):
        await publisher.publish("t", [(b"k", b"v")])
    flaky.mode = "ok"
    await publisher.publish("t", [(b"k", b"v")])  # the same producer, recovered
    assert len(flaky.sent) == 1
    await publisher.close()


def test_partition_is_the_default_partitioners_choice() -> None:
    """Keys land where aiokafka's (the Java client's) partitioner puts them: ordering per user."""
    rng = random.Random(3)
    keys = [rng.randbytes(rng.randrange(0, 40)) for _ in range(2000)]
    keys += [f"u{i}".encode() for i in range(500)]
    assert [murmur2(k) for k in keys] == [aiokafka_murmur2(k) for k in keys]


async def test_records_go_to_the_default_partition_of_their_key() -> None:
    producer = FakeProducer(partitions=7)
    publisher = _publisher([producer])
    await publisher.start()
    keys = [f"user-{i}".encode() for i in range(200)]
    await publisher.publish("t", [(k, b"v") for k in keys])
    every = list(range(7))
    expected = {k: DefaultPartitioner()(k, every, every) for k in keys}
    assert len(producer.sent) == len(keys)
    assert all(s.partition == expected[s.key] for s in producer.sent)
    await publisher.close()
