"""Redis losing its state, on a real Redis: the processor's writes refuse a state they do not
know, and the epoch tells the consumer which partitions to replay from their beginning."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition
from redis.asyncio import Redis

from streamrec_shared import topics
from streamrec_shared.profile import EPOCH, PRODUCT_DICT, profile_key
from streamrec_stream_processor.epoch import Epoch
from streamrec_stream_processor.foldin import ModelHandle
from streamrec_stream_processor.store import ProfileWrite, RedisStore, StateLost

PARTITIONS = {TopicPartition(topics.EVENTS, 0), TopicPartition(topics.CATALOG, 0)}


async def test_writes_after_a_loss_are_refused_and_the_codes_start_afresh(
    store: RedisStore, redis: Redis
) -> None:
    codes = await store.intern(PRODUCT_DICT, ["a", "b", "c"])
    assert codes == {"a": 0, "b": 1, "c": 2}
    await redis.flushdb()  # Redis restarted without its data

    with pytest.raises(StateLost):
        await store.intern(PRODUCT_DICT, ["c", "d"])
    with pytest.raises(StateLost):
        await store.write_profiles([ProfileWrite("u1", b"", b"x" * 80, ())])
    assert await redis.dbsize() == 0, "nothing written into the emptied Redis"

    epoch = Epoch(store, ModelHandle(store))
    assert await epoch.stale(PARTITIONS) == PARTITIONS  # a new epoch: replay everything
    assert await store.intern(PRODUCT_DICT, ["c", "d"]) == {"c": 0, "d": 1}
    await store.write_profiles([ProfileWrite("u1", b"", b"x" * 80, ())])
    assert await redis.exists(profile_key("u1"))


async def test_replayed_partitions_are_remembered_per_epoch(
    store: RedisStore, redis: Redis
) -> None:
    epoch = Epoch(store, ModelHandle(store))
    assert await epoch.stale(PARTITIONS) == PARTITIONS
    await epoch.rewound(PARTITIONS)
    assert await epoch.stale(PARTITIONS) == set()
    added = TopicPartition(topics.EVENTS, 1)
    assert await epoch.stale({*PARTITIONS, added}) == {added}

    # a second processor on the same Redis adopts the epoch and its replayed partitions
    other = RedisStore(store._settings, timeout_s=5.0, trending_half_life_s=86_400.0)
    await other.start()
    try:
        assert other.epoch == store.epoch
        assert await Epoch(other, ModelHandle(other)).stale(PARTITIONS) == set()
    finally:
        await other.stop()

    await redis.delete(EPOCH)  # lost again
    assert await epoch.stale(PARTITIONS) == PARTITIONS
