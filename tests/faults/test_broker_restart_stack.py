"""The fault matrix's broker row: the durable broker SIGKILLed under load and restarted.

A private stack of its own (the fault suite's shared one keeps the fast in-memory broker, which a
restart empties): the broker keeps its log and the consumer groups' offsets in durable storage
(``LocalStack(durable_broker=True)``, see ``streamrec_dev.localstack.infra``), as Kafka does.
``Load`` (tests/faults/load.py) writes through ingest and reads from the recommender throughout;
writers retry a 503 (or no answer) with the same event ids, as a shop's client does.

What it proves: ingest refuses (503) while the broker is down and acknowledges again after the
restart, the recommender answers 200 throughout, and every event answered 202, before, during or
after the crash, is in the archive once and counted once in its user's profile (``settled``).
If it fails, the message names, per events partition, the broker's log end after the restart and
the offsets the processor and the trainer had committed: a log ending below a committed offset
is the broker having served records it then lost. (The log end is read, not taken from the
broker: Tansu reports a partition's end as its last batch's base offset + 1, see
``test_what_tansu_reports``.)
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streamrec_dev.localstack.processes import kill
from streamrec_dev.localstack.stack import StackDescription
from streamrec_shared import topics

from ..ingest.probe import end_offsets
from ..polling import eventually, now
from .load import Load, ShopStack, settled, shop_stack

pytestmark = [pytest.mark.stack, pytest.mark.slow, pytest.mark.timeout(600)]

GROUPS = ("streamrec-stream-processor", "streamrec-trainer-archive")
CRASHES = 3  # each a chance to kill the broker with a produce in flight
DOWN_REFUSALS = 10  # refused attempts to see while the broker is down, before restarting it


@pytest.fixture(scope="module")
def durable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShopStack]:
    """A private stack on the durable broker with a small shop and an active model."""
    root = Path(tmp_path_factory.mktemp("broker-restart"))
    with shop_stack(
        root, n_users=60, n_products=40, events_per_user=5, durable_broker=True
    ) as shop:
        yield shop


async def _committed(bootstrap: str, group: str, tps: list[TopicPartition]) -> dict[int, int]:
    """The offsets ``group`` has committed on ``tps`` (-1: none)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        committed = {tp.partition: await consumer.committed(tp) for tp in tps}
        return {p: -1 if offset is None else offset for p, offset in committed.items()}
    finally:
        await consumer.stop()


async def _log_ends(bootstrap: str, reported: dict[TopicPartition, int]) -> dict[int, int]:
    """The true end offset of each partition: Tansu ``reported`` its last batch's base + 1, so
    read that batch (from ``reported - 1``) and take its last record's offset + 1."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(reported))
        for tp, end in reported.items():
            consumer.seek(tp, max(end - 1, 0))
        ends = {tp.partition: end for tp, end in reported.items()}
        for _ in range(2):
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                ends[tp.partition] = max(ends[tp.partition], records[-1].offset + 1)
        return ends
    finally:
        await consumer.stop()


async def _offsets(desc: StackDescription) -> str:
    """Per events partition: the broker's log end and each group's committed offset."""
    reported = await end_offsets(desc.kafka_bootstrap, topics.EVENTS)
    ends = await _log_ends(desc.kafka_bootstrap, reported)
    tps = sorted(reported, key=lambda tp: tp.partition)
    groups = {g: await _committed(desc.kafka_bootstrap, g, tps) for g in GROUPS}
    rows = [
        f"p{tp.partition}: log end {ends[tp.partition]} (reported {reported[tp]}), "
        + ", ".join(f"{g} {groups[g][tp.partition]}" for g in GROUPS)
        for tp in tps
    ]
    return "; ".join(rows)


def _refused(load: Load, at_least: int) -> Callable[[], bool]:
    """Whether ingest has refused ``at_least`` of the load's attempts so far."""
    return lambda: load.refusals.total() >= at_least


async def test_broker_sigkill_under_load(durable: ShopStack) -> None:
    """SIGKILL the broker mid-stream and restart it on the same port and storage, CRASHES times:
    ingest refuses while it is down (clients retry), nothing acknowledged is lost or doubled, the
    recommender never fails a read."""
    stack = durable.stack
    load = Load(durable.desc, f"b{uuid.uuid4().hex[:8]}", durable.products)
    async with load.running():
        for crash in range(CRASHES):
            await load.progress(60, timeout=90, what=f"events acknowledged before crash {crash}")
            await asyncio.to_thread(kill, stack.proc("broker"))
            target = load.refusals.total() + DOWN_REFUSALS
            await eventually(
                now(_refused(load, target)),
                timeout=30,
                what=f"ingest refusing events while the broker is down ({crash})",
            )
            await asyncio.to_thread(stack.restart_broker)
        await load.progress(60, timeout=90, what="events acknowledged after the last restart")
    assert load.refusals[503] > 0, f"ingest never answered 503: {load.refusals}"
    assert load.misses == [], load.misses
    try:
        await settled(load)
    except AssertionError as exc:
        offsets = await _offsets(durable.desc)
        raise AssertionError(f"{exc}\noffsets after the restarts: {offsets}") from exc


async def test_what_tansu_reports(durable: ShopStack) -> None:
    """Two answers of the durable broker the failure message above must be read with: the end
    offset of a partition is its last batch's base offset + 1 (one batch of 5 records: end 1, not
    5), and a fetch above the end returns nothing, not OFFSET_OUT_OF_RANGE (the position stays).
    Kafka would answer 5 and OFFSET_OUT_OF_RANGE; if Tansu changes, this test says so."""
    bootstrap, topic = durable.desc.kafka_bootstrap, f"probe-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=200)
    await producer.start()
    try:
        sent = [await producer.send(topic, f"r{i}".encode()) for i in range(5)]
        offsets = [(await s).offset for s in sent]
    finally:
        await producer.stop()
    assert offsets == [0, 1, 2, 3, 4]  # one batch
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        assert await consumer.end_offsets([tp]) == {tp: 1}
        consumer.assign([tp])
        consumer.seek(tp, 50)
        assert await consumer.getmany(timeout_ms=1000) == {}
        assert await consumer.position(tp) == 50  # not reset to the earliest offset
    finally:
        await consumer.stop()
