"""StreamConsumer's batch logic against a scripted in-memory consumer (pure logic; the stack
tests run it on the real broker): commit after durable effects, retries, dead letters,
revocation during a batch, and the lag sweep."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from prometheus_client import CollectorRegistry, Gauge

from streamrec_shared.consumer import ConsumerSettings, LagGauge, Record, StreamConsumer
from streamrec_shared.settings import KafkaSettings

EVENTS = TopicPartition("events.v1", 0)
CATALOG = TopicPartition("catalog.v1", 0)


class FakeConsumer:
    """Hands out scripted batches; records commits; knows highwaters and positions."""

    def __init__(self, batches: list[dict[TopicPartition, list[Any]]]) -> None:
        self.batches = batches
        self.assigned = {EVENTS, CATALOG}
        self.commits: list[dict[TopicPartition, int]] = []
        self.log: list[str] = []
        self.high = {EVENTS: 100, CATALOG: 10}
        self.revoked_at_position: set[TopicPartition] = set()

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[TopicPartition, Any]:
        return self.batches.pop(0) if self.batches else {}

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.log.append("commit")
        self.commits.append(dict(offsets))

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.high.get(tp)

    async def position(self, tp: TopicPartition) -> int:
        if tp in self.revoked_at_position:
            raise IllegalStateError(f"Partition {tp} is not assigned")
        return 20

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: 0 for tp in tps}


def msgs(tp: TopicPartition, *offsets: int) -> list[Any]:
    return [
        SimpleNamespace(topic=tp.topic, partition=tp.partition, offset=o, key=b"k", value=b"v")
        for o in offsets
    ]


class Recorder:
    def __init__(self, log: list[str], fail: list[BaseException] | None = None) -> None:
        self.log = log
        self.fail = fail or []
        self.calls: list[list[int]] = []

    async def __call__(self, records: Sequence[Record]) -> None:
        self.calls.append([r.offset for r in records])
        if self.fail:
            raise self.fail.pop(0)
        self.log.append("handled")


def make(
    fake: FakeConsumer, handlers: dict[str, Any], **kw: Any
) -> tuple[StreamConsumer, list[tuple[int, str]]]:
    dead: list[tuple[int, str]] = []

    async def dead_letter(rec: Record, reason: str, error: str) -> None:
        dead.append((rec.offset, reason))

    registry = CollectorRegistry()
    gauge = Gauge("lag", "lag", ["topic", "partition"], registry=registry)
    sc = StreamConsumer(
        KafkaSettings(),
        ConsumerSettings(group_id="g", commit_interval_s=0.0, lag_interval_s=3600),
        handlers,
        dead_letter=kw.pop("dead_letter", dead_letter),
        lag=LagGauge.by_topic_partition(gauge),
        **kw,
    )
    sc.consumer = cast(Any, fake)
    sc._lag_due = float("inf")
    return sc, dead


async def test_offsets_are_committed_after_the_handlers_in_topic_order() -> None:
    fake = FakeConsumer([{EVENTS: msgs(EVENTS, 5, 6), CATALOG: msgs(CATALOG, 1)}])
    order: list[str] = []

    async def catalog(records: Sequence[Record]) -> None:
        order.append("catalog")
        fake.log.append("handled")

    async def events(records: Sequence[Record]) -> None:
        order.append("events")
        fake.log.append("handled")

    sc, _ = make(fake, {"catalog.v1": catalog, "events.v1": events})
    await sc._step(cast(Any, fake))
    assert order == ["catalog", "events"]
    assert fake.log == ["handled", "handled", "commit"]
    assert fake.commits == [{EVENTS: 7, CATALOG: 2}]


async def test_retryable_errors_retry_the_same_records_before_any_commit() -> None:
    fake = FakeConsumer([{EVENTS: msgs(EVENTS, 1, 2)}])
    handler = Recorder(fake.log, [ConnectionError("redis away"), ConnectionError("still")])
    sc, dead = make(fake, {"events.v1": handler}, retryable=(ConnectionError,))
    await sc._step(cast(Any, fake))
    assert handler.calls == [[1, 2], [1, 2], [1, 2]]
    assert fake.log == ["handled", "commit"]
    assert fake.commits == [{EVENTS: 3}]
    assert dead == []


async def test_a_poison_batch_is_dead_lettered_and_the_partition_moves_on() -> None:
    fake = FakeConsumer([{EVENTS: msgs(EVENTS, 8, 9)}])
    handler = Recorder(fake.log, [ValueError("bug")])
    sc, dead = make(fake, {"events.v1": handler})
    await sc._step(cast(Any, fake))
    assert dead == [(8, "processing_error"), (9, "processing_error")]
    assert fake.commits == [{EVENTS: 10}]


async def test_without_dead_letters_a_poison_batch_is_not_committed() -> None:
    fake = FakeConsumer([{EVENTS: msgs(EVENTS, 8)}])
    sc, _ = make(fake, {"events.v1": Recorder(fake.log, [ValueError("bug")])}, dead_letter=None)
    with pytest.raises(ValueError, match="bug"):
        await sc._step(cast(Any, fake))
    assert fake.commits == []


async def test_a_revocation_waits_for_the_batch_in_hand_and_commits_it() -> None:
    fake = FakeConsumer([{EVENTS: msgs(EVENTS, 3, 4)}])
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(records: Sequence[Record]) -> None:
        entered.set()
        await release.wait()
        fake.log.append("handled")

    sc, _ = make(fake, {"events.v1": slow})
    sc.settings = sc.settings.model_copy(update={"commit_interval_s": 3600.0})
    sc._commit_due = float("inf")  # only the revocation commits
    step = asyncio.create_task(sc._step(cast(Any, fake)))
    await entered.wait()
    revoking = asyncio.create_task(sc._on_revoked({EVENTS}))
    await asyncio.sleep(0.01)
    assert not revoking.done()  # it waits for the batch to be durable
    release.set()
    await step
    await revoking
    assert fake.log == ["handled", "commit"]
    assert fake.commits == [{EVENTS: 5}]


async def test_a_batch_fetched_before_a_revocation_is_dropped() -> None:
    fake = FakeConsumer([{EVENTS: msgs(EVENTS, 3)}])
    handler = Recorder(fake.log)
    sc, _ = make(fake, {"events.v1": handler})
    await sc._lock.acquire()  # a revocation in progress holds the lock
    step = asyncio.create_task(sc._step(cast(Any, fake)))
    await asyncio.sleep(0.01)
    sc._generation += 1  # what _on_revoked does before releasing
    sc._lock.release()
    await step
    assert handler.calls == []
    assert fake.commits == []


async def test_lag_sweep_skips_a_partition_revoked_mid_sweep() -> None:
    """A rebalance may revoke a partition between ``assignment()`` and ``position()``."""
    fake = FakeConsumer([])
    fake.revoked_at_position = {CATALOG}
    fake.high = {EVENTS: 50, CATALOG: 50}
    sc, _ = make(fake, {"events.v1": Recorder(fake.log)})
    assert sc.lag is not None
    await sc._sweep_lag(cast(Any, fake))
    assert sc.lag.gauge.labels("events.v1", "0")._value.get() == 30
    assert sc._reported == {EVENTS}
    fake.assigned = {CATALOG}
    await sc._sweep_lag(cast(Any, fake))
    assert sc._reported == set()  # the gauge of the revoked partition is dropped


async def test_a_tail_reader_handles_every_batch_and_commits_nothing() -> None:
    fake = FakeConsumer([{CATALOG: msgs(CATALOG, 0, 1)}, {CATALOG: msgs(CATALOG, 2)}])
    handler = Recorder(fake.log)
    sc = StreamConsumer(KafkaSettings(), ConsumerSettings(group_id=None), {"catalog.v1": handler})
    sc.consumer = cast(Any, fake)
    sc._lag_due = float("inf")
    await sc._step(cast(Any, fake))
    await sc._step(cast(Any, fake))
    await sc._commit(cast(Any, fake))  # as at a stop or a revocation
    assert handler.calls == [[0, 1], [2]]
    assert fake.log == ["handled", "handled"]
    assert fake.commits == []
    assert sc.name == "tail:catalog.v1"
