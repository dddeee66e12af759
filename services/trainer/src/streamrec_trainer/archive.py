"""The archive: every events.v1 record into ``user_product_interactions``, exactly once.

aiokafka's at-least-once recipe (``streamrec_shared.consumer``): auto-commit off; fetch a
batch; write it in ONE Postgres transaction (COPY into a temp table, then
``INSERT ... ON CONFLICT (event_id) DO NOTHING``); only after the commit, commit the offsets.
A crash between the two replays the batch, which the unique ``event_id`` turns into a no-op,
so each event is archived once whatever dies when.

Errors are of two kinds. Transient ones (Postgres unreachable or restarting, too many
connections, a serialization failure or deadlock: any other ``PostgresError`` or ``OSError``)
retry the same batch, offsets untouched. A data error (``DATA_ERRORS``: Postgres cannot store a
value, e.g. a NUL in a text written by an older ingest or another producer, a price beyond the
column's precision) is the fault of one record, never of the batch: the batch is bisected until
the guilty records are alone, the others are archived, and each guilty record goes to the
dead-letter topic (``events.dlq.v1``, reason and source in the headers) and
``streamrec_trainer_archive_dead_letters_total{topic,reason}``, so one record never stalls the
archive. A transient error during the bisection retries the whole batch (what was archived is a
no-op the second time; a dead letter may then be published twice).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Sequence

import asyncpg
from pydantic import ValidationError

from streamrec_shared import metrics, topics
from streamrec_shared.consumer import DeadLetter, LagGauge, Record, StreamConsumer
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


DATA_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.DataError,  # SQLSTATE class 22: a value Postgres cannot store (text, number, date)
    # class 23 (the event_id duplicate never raises: ON CONFLICT DO NOTHING)
    asyncpg.IntegrityConstraintViolationError,
    # asyncpg's own "invalid input for query argument" (a value it cannot encode), a ValueError
    asyncpg.exceptions._base.DataError,
    UnicodeError,  # a str that is not UTF-8 (an unpaired surrogate)
)
"""Errors that are one record's fault: the archive isolates and dead-letters that record."""


def rejection_reason(exc: BaseException) -> str:
    """A bounded label for a data error: the snake_case name of its class
    (``CharacterNotInRepertoireError`` -> ``character_not_in_repertoire``)."""
    if isinstance(exc, asyncpg.PostgresError):
        name = type(exc).__name__.removesuffix("Error") or "postgres"
        return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    return "unencodable"


async def _write(pool: asyncpg.Pool, events: Sequence[UserEvent]) -> int:
    """Write ``events`` in one transaction; returns how many were new (not already archived)."""
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


async def archive_events(pool: asyncpg.Pool, events: Sequence[UserEvent]) -> int:
    """Write ``events`` in one transaction; returns how many were new (not already archived).
    A record Postgres rejects fails the whole call (``DATA_ERRORS``)."""
    if not events:
        return 0
    return await _write(pool, events)


async def archive_isolating(
    pool: asyncpg.Pool, events: Sequence[UserEvent]
) -> tuple[int, list[tuple[int, Exception]]]:
    """Write ``events``, isolating the ones Postgres rejects: one transaction when all are
    storable, else the batch bisected until each data error (``DATA_ERRORS``) is one event's.
    Returns (how many were new, [(index of a rejected event, its error)]). Transient errors
    raise (the caller retries the batch; what was written is a no-op the second time)."""
    inserted = 0
    rejected: list[tuple[int, Exception]] = []

    async def write(lo: int, hi: int) -> None:
        nonlocal inserted
        try:
            inserted += await _write(pool, events[lo:hi])
        except DATA_ERRORS as exc:
            if hi - lo == 1:
                rejected.append((lo, exc))
                return
            mid = (lo + hi) // 2
            await write(lo, mid)
            await write(mid, hi)

    if events:
        await write(0, len(events))
    return inserted, rejected


class Archiver:
    """Consumes events.v1 in its own group (``ArchiveSettings.group_id``) and archives batch by
    batch on the shared ``StreamConsumer`` (offsets committed after the Postgres commit)."""

    def __init__(
        self,
        kafka_settings: KafkaSettings,
        settings: ArchiveSettings,
        pool: asyncpg.Pool,
        *,
        dead_letter: DeadLetter,
        on_archived: Callable[[int], None] | None = None,
    ) -> None:
        self.pool = pool
        self.dead_letter = dead_letter
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
        """One batch in one transaction (bisected around records Postgres rejects, which are
        dead-lettered). A record that does not decode was validated by ingest and is
        dead-lettered by the stream processor: the archive skips it."""
        events: list[UserEvent] = []
        sources: list[Record] = []
        for rec in records:
            try:
                events.append(decode_event(rec.value or b""))
                sources.append(rec)
            except ValidationError:
                logger.warning("archive skips undecodable record %s@%s", rec.partition, rec.offset)
        inserted, rejected = await archive_isolating(self.pool, events)
        for index, exc in rejected:
            await self.dead_letter(sources[index], rejection_reason(exc), str(exc)[:1000])
        newest: dict[int, int] = defaultdict(int)
        for rec in records:
            if rec.timestamp_ms is not None:
                newest[rec.partition] = max(newest[rec.partition], rec.timestamp_ms)
        for partition, ts_ms in newest.items():
            metrics.TRAINER_ARCHIVE_POSITION.labels(str(partition)).set(ts_ms / 1000.0)
        if self.on_archived is not None and inserted:
            self.on_archived(inserted)
