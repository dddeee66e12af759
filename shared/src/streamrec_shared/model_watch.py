"""Follow the active model version: ``models.v1`` announcements, registry polling as fallback.

Services start not-ready, learn about the active version here, load it off the event loop and
swap one immutable reference (the callback's job). The watcher calls ``on_model`` once per new
active version, whichever source saw it first; a rollback (a lower version made active) is a
change like any other. It never raises out of its loops: failures are logged and retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from streamrec_shared import kafka, topics
from streamrec_shared.events import ModelAnnouncement, decode
from streamrec_shared.settings import KafkaSettings
from streamrec_shared.tasks import cancel_all

logger = logging.getLogger(__name__)

OnModel = Callable[[ModelAnnouncement], Awaitable[None]]

ACTIVE_SQL = """
SELECT version, artifact_uri, coalesce(activated_at, created_at) AS activated_at
FROM model_versions WHERE is_active AND artifact_uri IS NOT NULL
"""


async def fetch_active(dsn: str) -> ModelAnnouncement | None:
    """The registry's active version, straight from Postgres."""
    conn = await asyncpg.connect(dsn, timeout=3)
    try:
        row = await conn.fetchrow(ACTIVE_SQL, timeout=3)
    finally:
        await conn.close()
    if row is None:
        return None
    return ModelAnnouncement(
        version=row["version"],
        artifact_uri=row["artifact_uri"],
        activated_at=row["activated_at"] or datetime.now(UTC),
    )


class ModelWatcher:
    """Calls ``on_model`` when the active version changes (announcement or registry poll)."""

    def __init__(
        self,
        kafka_settings: KafkaSettings,
        postgres_dsn: str | None,
        on_model: OnModel,
        *,
        poll_interval_s: float = 5.0,
    ) -> None:
        self.kafka_settings = kafka_settings
        self.postgres_dsn = postgres_dsn
        self.on_model = on_model
        self.poll_interval_s = poll_interval_s
        self.current: ModelAnnouncement | None = None
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Check the registry once (so a restart finds the active model), then watch."""
        if self.postgres_dsn:
            with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
                found = await fetch_active(self.postgres_dsn)
                if found is not None:
                    await self._offer(found)
            self._tasks.append(asyncio.create_task(self._poll_loop(), name="model-poll"))
        self._tasks.append(asyncio.create_task(self._kafka_loop(), name="model-announcements"))

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks.clear()

    async def _offer(self, ann: ModelAnnouncement) -> None:
        async with self._lock:
            cur = self.current
            if cur is not None and (cur.version, cur.artifact_uri) == (
                ann.version,
                ann.artifact_uri,
            ):
                return
            try:
                await self.on_model(ann)
            except Exception:  # loop boundary: a broken artifact must not kill the watcher
                logger.exception("loading model version %s failed", ann.version)
                return
            self.current = ann
            logger.info("active model version is now %s", ann.version)

    async def _poll_loop(self) -> None:
        assert self.postgres_dsn is not None
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                found = await fetch_active(self.postgres_dsn)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                logger.warning("registry poll failed: %s", exc)
                continue
            if found is not None:
                await self._offer(found)

    async def _kafka_loop(self) -> None:
        while True:
            consumer = kafka.consumer(self.kafka_settings, group_id=None)
            try:
                await consumer.start()
                tp = TopicPartition(topics.MODELS, 0)
                consumer.assign([tp])
                end = (await consumer.end_offsets([tp]))[tp]
                consumer.seek(tp, max(0, end - 1))  # the latest announcement, then new ones
                async for msg in consumer:
                    try:
                        ann = decode(msg.value, ModelAnnouncement)
                    except ValidationError:
                        logger.warning("ignoring malformed models.v1 record at %s", msg.offset)
                        continue
                    await self._offer(ann)
            except (KafkaError, OSError) as exc:
                logger.warning("models.v1 consumer failed (%s); retrying", exc)
                await asyncio.sleep(2.0)
            finally:
                with contextlib.suppress(KafkaError, OSError):
                    await consumer.stop()
