"""The archive: every events.v1 record into ``user_product_interactions``, exactly once.

aiokafka's at-least-once recipe: auto-commit off; fetch a batch; write it in ONE Postgres
transaction (COPY into a temp table, then ``INSERT ... ON CONFLICT (event_id) DO NOTHING``);
only after the commit, commit the offsets. A crash between the two replays the batch, which the
unique ``event_id`` turns into a no-op, so each event is archived once whatever dies when.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from aiokafka.errors import CommitFailedError, KafkaError
from pydantic import ValidationError

from streamrec_shared import kafka, metrics, topics
from streamrec_shared.events import UserEvent, decode_event
from streamrec_shared.settings import KafkaSettings
from streamrec_trainer.settings import ArchiveSettings

logger = logging.getLogger(__name__)

_COLUMNS = (
    "event_id", "user_id", "product_id", "event_type", "value", "price", "ts",
    "received_at", "session_id", "rec_id", "context",
)  # fmt: skip

_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS archive_staging (
    event_id text, user_id text, product_id text, event_type text, value double precision,
    price numeric, ts timestamptz, received_at timestamptz, session_id text, rec_id text,
    context jsonb
) ON COMMIT DELETE ROWS
"""
_UPSERT = """
WITH u AS (
    INSERT INTO users (user_id)
    SELECT DISTINCT user_id FROM archive_staging ORDER BY user_id
    ON CONFLICT DO NOTHING
), p AS (
    INSERT INTO products (product_id, in_catalog)
    SELECT DISTINCT product_id, false FROM archive_staging ORDER BY product_id
    ON CONFLICT DO NOTHING
)
SELECT 1
"""
_INSERT = f"""
INSERT INTO user_product_interactions ({", ".join(_COLUMNS)})
SELECT DISTINCT ON (event_id) {", ".join(_COLUMNS)} FROM archive_staging ORDER BY event_id
ON CONFLICT (event_id) DO NOTHING
"""


def _row(e: UserEvent) -> tuple[object, ...]:
    return (
        e.event_id, e.user_id, e.product_id, e.event_type, e.value, e.price, e.timestamp,
        e.received_at, e.session_id, e.rec_id,
        json.dumps(e.context) if e.context is not None else None,
    )  # fmt: skip


async def archive_events(pool: asyncpg.Pool, events: Sequence[UserEvent]) -> int:
    """Write ``events`` in one transaction; returns how many were new (not already archived)."""
    if not events:
        return 0
    for attempt in range(5):
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(_STAGING)
                await conn.copy_records_to_table(
                    "archive_staging", records=[_row(e) for e in events], columns=_COLUMNS
                )
                await conn.execute(_UPSERT)
                status = await conn.execute(_INSERT)
            inserted = int(status.rsplit(" ", 1)[1])
            metrics.TRAINER_ARCHIVED.inc(inserted)
            metrics.TRAINER_DUPLICATES.inc(len(events) - inserted)
            return inserted
        except asyncpg.DeadlockDetectedError:
            if attempt == 4:
                raise
            await asyncio.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


class Archiver:
    """Consumes events.v1 in its own group and archives batch by batch."""

    def __init__(
        self,
        kafka_settings: KafkaSettings,
        settings: ArchiveSettings,
        pool: asyncpg.Pool,
        *,
        on_archived: Callable[[int], None] | None = None,
    ) -> None:
        self.kafka_settings = kafka_settings
        self.settings = settings
        self.pool = pool
        self.on_archived = on_archived
        self.consumer: AIOKafkaConsumer | None = None
        self.healthy = False
        self._lag_due = 0.0

    async def run(self) -> None:
        """Forever: (re)connect, fetch, archive, commit. Errors are logged and retried."""
        while True:
            self.consumer = kafka.consumer(
                self.kafka_settings,
                topics.EVENTS,
                group_id=self.settings.group_id,
                max_poll_records=self.settings.max_batch,
                fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
                fetch_min_bytes=self.settings.fetch_min_bytes,
            )
            try:
                await self.consumer.start()
                self.healthy = True
                while True:
                    await self._step(self.consumer)
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError, asyncpg.PostgresError) as exc:
                self.healthy = False
                logger.warning("archive loop error (%s); restarting consumer", exc)
                await asyncio.sleep(1.0)
            except Exception:  # loop boundary
                self.healthy = False
                logger.exception("archive loop crashed; restarting consumer")
                await asyncio.sleep(1.0)
            finally:
                await self.consumer.stop()

    async def _fetch(self, consumer: AIOKafkaConsumer) -> list[ConsumerRecord[bytes, bytes]]:
        """Records for one transaction: up to ``max_batch``, lingering after the first ones."""
        settings = self.settings
        fetched = await consumer.getmany(
            timeout_ms=settings.poll_timeout_ms, max_records=settings.max_batch
        )
        records = [msg for messages in fetched.values() for msg in messages]
        if not records:
            return records
        deadline = time.monotonic() + settings.batch_linger_ms / 1000.0
        while len(records) < settings.max_batch:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                break
            more = await consumer.getmany(
                timeout_ms=left_ms, max_records=settings.max_batch - len(records)
            )
            records.extend(msg for messages in more.values() for msg in messages)
        return records

    async def _step(self, consumer: AIOKafkaConsumer) -> None:
        records = await self._fetch(consumer)
        if not records:
            return
        events: list[UserEvent] = []
        for msg in records:
            try:
                events.append(decode_event(msg.value))
            except ValidationError:
                # ingest validated it; a record we cannot read is left to the processor's DLQ
                logger.warning("archive skips undecodable record %s@%s", msg.partition, msg.offset)
        inserted = await archive_events(self.pool, events)
        try:
            await consumer.commit()
        except CommitFailedError:
            # partitions moved during a rebalance: the batch comes again and dedupes by event_id
            logger.info("offset commit failed after a rebalance; batch will be replayed")
        if self.on_archived is not None and inserted:
            self.on_archived(inserted)
        now = time.monotonic()
        if now >= self._lag_due:
            # end_offsets is a request to the broker: not once per batch
            self._lag_due = now + self.settings.lag_interval_s
            await self._lag(consumer)

    async def _lag(self, consumer: AIOKafkaConsumer) -> None:
        assigned = consumer.assignment()
        if not assigned:
            return
        ends = await consumer.end_offsets(list(assigned))
        for tp in assigned:
            position = await consumer.position(tp)
            metrics.TRAINER_CONSUMER_LAG.labels(str(tp.partition)).set(max(0, ends[tp] - position))
