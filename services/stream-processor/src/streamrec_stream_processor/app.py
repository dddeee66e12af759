"""The stream processor: one ``StreamConsumer``, Redis state, and a small HTTP server.

One consumer-group member per process (group ``ProcessorConsumer.group_id``) reads ``catalog.v1``
-> ``CatalogUpdater``, ``users.v1`` -> ``UserUpdater`` and ``events.v1`` -> ``EventUpdater``
(profiles, trending, cache invalidation) then ``Attributor`` (click / conversion counters), in
that order within a batch, and commits a batch's offsets only after those Redis writes
(``streamrec_shared.consumer``). Poison records go to ``events.dlq.v1`` and
``streamrec_processor_dead_letters_total``. Redis is the state store: no tables, no changelogs.

Why no faust: the processor used faust only as a consumer loop (agents over
``take_events``), a web server for three probes, two services and a timer; faust's own loop
added a per-message ``wait_first``, a fixed 1.5 s fetch wait and batch lingering, which the
code patched through faust's private methods (``_drain_messages``, ``_create_consumer``) in a
fork that any faust release could break. The shared consumer does the same job with
public aiokafka calls (batch as available, a short fetch wait, commit after durable effects,
rebalance listener), the HTTP side is a FastAPI app on uvicorn like the other services, and
the timers are asyncio tasks, so one consume/commit loop serves the processor and the archive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from streamrec_shared import feedback, kafka, metrics, topics
from streamrec_shared.consumer import DeadLetterPublisher, LagGauge, Record, StreamConsumer
from streamrec_shared.events import UserEvent
from streamrec_shared.http import error_body, install_error_handlers
from streamrec_shared.model_watch import ModelWatcher
from streamrec_shared.rec_ids import RecIds
from streamrec_stream_processor.attribution import Attributor, countable
from streamrec_stream_processor.epoch import Epoch
from streamrec_stream_processor.foldin import ModelHandle
from streamrec_stream_processor.profiles import ProfileConfig
from streamrec_stream_processor.settings import ProcessorSettings, get_settings
from streamrec_stream_processor.store import RedisStore
from streamrec_stream_processor.updater import (
    RETRYABLE,
    CatalogUpdater,
    EventUpdater,
    UserUpdater,
    until_redis_takes,
)

logger = logging.getLogger(__name__)

SERVICE = "stream-processor"


@dataclass
class Processor:
    """The processor's parts; ``start`` / ``stop`` run them (the app's lifespan calls them)."""

    settings: ProcessorSettings
    store: RedisStore
    models: ModelHandle
    events: EventUpdater
    catalog: CatalogUpdater
    users: UserUpdater
    consumer: StreamConsumer
    attributor: Attributor | None = None
    producer: AIOKafkaProducer | None = None
    watcher: ModelWatcher | None = None
    _dead_letters: DeadLetterPublisher | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def started(self) -> bool:
        return self.consumer.healthy

    async def dead_letter(self, rec: Record, reason: str, error: str) -> None:
        if self._dead_letters is None:
            raise RuntimeError("the processor is not started")
        await self._dead_letters(rec, reason, error)

    async def on_events(self, batch: Sequence[Record]) -> None:
        """``events.v1``: profiles first (freshness), then attribution; both before commit."""
        decoded = await self.events.apply(batch)
        if self.attributor is not None:
            await self._attribute([e for e in decoded if countable(e)])

    async def _attribute(self, events: list[UserEvent]) -> None:
        attributor = self.attributor
        if not events or attributor is None:
            return
        try:  # Redis away: the batch waits (counting is idempotent)
            await until_redis_takes("attribution", lambda: attributor.apply(events))
        except RedisError:  # a script error must not dead-letter applied events
            logger.exception("attribution of %d events failed; skipped", len(events))

    async def start(self) -> None:
        s = self.settings
        if s.kafka.create_topics:
            await kafka.ensure_topics(s.kafka, topics.topic_specs(s.kafka.events_partitions))
        await self.store.start()
        self.producer = kafka.producer(s.kafka)
        await self.producer.start()
        self._dead_letters = DeadLetterPublisher(self.producer, metrics.PROCESSOR_DLQ)
        if s.processor.attribution:
            self.attributor = Attributor(
                self.store.redis,
                window_s=s.processor.attribution_window_s,
                retention_s=s.processor.online_retention_s,
                rec_ids=RecIds(s.feedback.key(), feedback.ALGORITHM_CODES),
            )
        dsn = s.postgres.dsn.get_secret_value()
        self.watcher = ModelWatcher(
            s.kafka,
            dsn or None,
            self.models.load,
            poll_interval_s=s.processor.model_poll_interval_s,
        )
        await self.watcher.start()
        self._tasks = [
            self.consumer.start(),
            asyncio.create_task(metrics.watch_loop_lag(SERVICE), name="loop-lag"),
        ]

    async def stop(self) -> None:
        await self.consumer.stop()  # commits what was handled, leaves the group
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.watcher is not None:
            await self.watcher.stop()
        if self.producer is not None:
            with contextlib.suppress(KafkaError, OSError):
                await self.producer.stop()
        await self.store.stop()


def build(settings: ProcessorSettings | None = None) -> Processor:
    """The processor's parts, wired but not started (no I/O here)."""
    settings = settings or get_settings()
    tuning = settings.processor
    store = RedisStore(
        settings.redis,
        timeout_s=tuning.redis_timeout_s,
        trending_half_life_s=tuning.trending_half_life_hours * 3600.0,
        event_id_window_s=tuning.event_id_window_hours * 3600.0,
        event_id_max=tuning.event_id_max,
    )
    models = ModelHandle(store)
    profile = settings.profile
    config = ProfileConfig(
        half_life_days=profile.half_life_days,
        max_items=profile.max_recent_items,
        max_history=profile.max_history,
        max_categories=tuning.max_categories,
        seen_ids=tuning.seen_ids,
    )

    async def dead_letter(rec: Record, reason: str, error: str) -> None:
        await proc.dead_letter(rec, reason, error)

    events = EventUpdater(
        store, models, config, dead_letter, max_future_skew_s=tuning.max_future_skew_s
    )
    catalog = CatalogUpdater(store, dead_letter)
    users = UserUpdater(store, dead_letter)

    async def on_events(batch: Sequence[Record]) -> None:
        await proc.on_events(batch)

    consumer = StreamConsumer(
        settings.kafka,
        tuning.consumer,
        # catalog and user attributes first: an event sees its product's category if both
        # arrived in the same batch
        {topics.CATALOG: catalog.apply, topics.USERS: users.apply, topics.EVENTS: on_events},
        dead_letter=dead_letter,
        retryable=(*RETRYABLE, KafkaError),
        lag=LagGauge.by_topic_partition(metrics.PROCESSOR_CONSUMER_LAG),
        guard=Epoch(store, models),
    )
    proc = Processor(settings, store, models, events, catalog, users, consumer)
    return proc


def create_app(settings: ProcessorSettings | None = None) -> FastAPI:
    """The processor as an ASGI app: its lifespan runs the consumer; routes are the probes."""
    proc = build(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await proc.start()
        try:
            yield
        finally:
            await proc.stop()

    app = FastAPI(title="streamrec stream processor", version="1", lifespan=lifespan)
    app.state.processor = proc
    install_error_handlers(app)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> Response:
        """Redis answers and the consumer runs; lists the partitions this worker owns."""
        redis_ok = await proc.store.ping()
        metrics.DEPENDENCY_UP.labels(SERVICE, "redis").set(int(redis_ok))
        model = proc.models.current
        assigned: dict[str, list[int]] = {}
        for tp in proc.consumer.assignment():
            assigned.setdefault(tp.topic, []).append(tp.partition)
        checks = {
            "redis": redis_ok,
            "started": proc.started,
            "model_version": model.version if model is not None else None,
            "partitions": {t: sorted(ps) for t, ps in sorted(assigned.items())},
        }
        if redis_ok and proc.started:
            return JSONResponse({"status": "ready", "checks": checks})
        return JSONResponse(error_body("not_ready", "not ready", checks), status_code=503)

    @app.get("/metrics", tags=["ops"], include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(metrics.exposition(SERVICE), media_type=CONTENT_TYPE_LATEST)

    return app
