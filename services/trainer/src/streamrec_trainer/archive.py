"""The archive: every events.v1 record into ``user_product_interactions``, exactly once.

aiokafka's at-least-once recipe (``streamrec_shared.consumer``): auto-commit off; fetch a
batch; write it in ONE Postgres transaction (COPY into a temp table, then
``INSERT ... ON CONFLICT (event_id) DO NOTHING``); only after the commit, commit the offsets.
A crash between the two replays the batch, which the unique ``event_id`` turns into a no-op,
so each event is archived once whatever dies when.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence

import asyncpg
from pydantic import ValidationError

from streamrec_shared import metrics, topics
from streamrec_shared.consumer import LagGauge, Record, StreamConsumer
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
    """Consumes events.v1 in its own group (``ArchiveSettings.group_id``) and archives batch by
    batch on the shared ``StreamConsumer`` (offsets committed after the Postgres commit)."""

    def __init__(
        self,
        kafka_settings: KafkaSettings,
        settings: ArchiveSettings,
        pool: asyncpg.Pool,
        *,
        on_archived: Callable[[int], None] | None = None,
    ) -> None:
        self.pool = pool
        self.on_archived = on_archived
        self.consumer = StreamConsumer(
            kafka_settings,
            settings,
            {topics.EVENTS: self.archive},
            retryable=(asyncpg.PostgresError, OSError),
            lag=LagGauge.by_partition(metrics.TRAINER_CONSUMER_LAG),
        )

    @property
    def healthy(self) -> bool:
        return self.consumer.healthy

    async def run(self) -> None:
        """Forever: fetch, archive, commit (errors are logged and retried)."""
        await self.consumer.run()

    async def archive(self, records: Sequence[Record]) -> None:
        """One batch in one transaction. A record that does not decode was validated by
        ingest and is dead-lettered by the stream processor: the archive skips it."""
        events: list[UserEvent] = []
        for rec in records:
            try:
                events.append(decode_event(rec.value or b""))
            except ValidationError:
                logger.warning("archive skips undecodable record %s@%s", rec.partition, rec.offset)
        inserted = await archive_events(self.pool, events)
        if self.on_archived is not None and inserted:
            self.on_archived(inserted)
