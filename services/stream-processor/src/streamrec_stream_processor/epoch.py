"""Redis lost its state: notice, and rebuild it by replaying the topics from their beginning.

Redis holds only derived state, but the processor caches some of it (product and category
codes, the fold-in model's codes), and the recommender reads it as the truth: after a Redis
restart without data, profiles written with cached codes would name the wrong products and the
deactivated-product set would be gone. So:

- ``sr:epoch`` (HASH, no TTL) names the life of Redis's state: ``id`` is created (HSETNX) by
  the first writer that finds none, i.e. on a new Redis or one that lost its data.
- Every processor write script checks that ``id`` is the one the writer knows
  (``store.GUARD``), so nothing is written into a Redis that lost its state behind a cache.
- Before each batch (every second when idle) the consumer asks ``Epoch.stale`` which of its
  partitions this epoch has not seen from the beginning (field ``p:<topic>:<partition>``);
  those are sought to their first offset, the offset committed, and the field set. A new id
  drops the store's code caches and re-interns the fold-in model's items first.

So a lost Redis is rebuilt by the normal code path: ``catalog.v1`` and ``users.v1`` are
compacted (every product's and user's latest record: catalog state, the unavailable set, user
attributes), ``events.v1`` gives profiles and trending back for the topic's retention (older
history is in the trainer's archive in Postgres, which trains the next model; the profile of
a user whose events all fell out of retention comes back with their next event).
"""

from __future__ import annotations

import logging

from aiokafka import TopicPartition

from streamrec_shared.profile import EPOCH
from streamrec_stream_processor.foldin import ModelHandle
from streamrec_stream_processor.store import RedisStore, StateLost

logger = logging.getLogger(__name__)

# KEYS: the epoch hash. ARGV: the epoch id, then field names. Marks the fields only while the
# epoch is still that id (a second loss in between must not be marked as replayed).
_MARK = """
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return 0 end
for i = 2, #ARGV do redis.call('HSET', KEYS[1], ARGV[i], '1') end
return 1
"""


def field_of(tp: TopicPartition) -> str:
    return f"p:{tp.topic}:{tp.partition}"


class Epoch:
    """The processor's ``StateGuard`` (``streamrec_shared.consumer``) over its Redis store."""

    lost: tuple[type[BaseException], ...] = (StateLost,)

    def __init__(self, store: RedisStore, models: ModelHandle) -> None:
        self.store = store
        self.models = models

    async def stale(self, assigned: set[TopicPartition]) -> set[TopicPartition]:
        known = self.store.epoch
        current, replayed = await self.store.adopt_epoch()
        if current != known:
            await self.models.reload()  # its item codes were interned in the old state
        return {tp for tp in assigned if field_of(tp) not in replayed}

    async def rewound(self, partitions: set[TopicPartition]) -> None:
        marked = await self.store.redis.eval(
            _MARK, 1, EPOCH, self.store.epoch, *sorted(field_of(tp) for tp in partitions)
        )
        if not marked:  # lost again meanwhile: the next ``stale`` finds them unmarked
            logger.warning("Redis lost its state again while the processor rewound")
