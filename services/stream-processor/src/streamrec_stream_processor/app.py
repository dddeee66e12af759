"""The faust application, built from settings: topics, agents, timers, web views, services.

One ``faust.App`` per process. Redis is the state store (``store.RedisStore``), so the app
declares no tables and needs no changelog topics. The app's consumer group is
``ProcessorTuning.app_id``: workers with the same id split the partitions of every topic.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST

from streamrec_shared import metrics, topics
from streamrec_shared.settings import KafkaSettings
from streamrec_stream_processor import agents
from streamrec_stream_processor.foldin import ModelHandle, ModelService
from streamrec_stream_processor.profiles import ProfileConfig
from streamrec_stream_processor.settings import ProcessorSettings, get_settings
from streamrec_stream_processor.store import RedisStore
from streamrec_stream_processor.transport import ProcessorApp
from streamrec_stream_processor.updater import (
    CatalogUpdater,
    EventUpdater,
    Record,
    UserUpdater,
)

logger = logging.getLogger(__name__)

SERVICE = "stream-processor"


def faust_config(settings: ProcessorSettings) -> dict[str, Any]:
    """The faust ``App`` keyword arguments for these settings."""
    kafka: KafkaSettings = settings.kafka
    tuning = settings.processor
    data_dir = tuning.data_dir or os.environ.get("FAUST_DATADIR")
    if not data_dir:
        data_dir = tempfile.mkdtemp(prefix="streamrec-stream-processor-")
    return {
        "broker": [f"kafka://{h.strip()}" for h in kafka.bootstrap_servers.split(",")],
        "broker_client_id": kafka.client_id,
        # Tansu completes a group join after ~half the rebalance timeout: take them from settings.
        "broker_session_timeout": kafka.session_timeout_ms / 1000.0,
        "broker_heartbeat_interval": kafka.heartbeat_interval_ms / 1000.0,
        "broker_rebalance_timeout": kafka.rebalance_timeout_ms / 1000.0,
        "broker_commit_interval": tuning.commit_interval_s,
        "broker_max_poll_records": max(tuning.batch_max, 500),
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1 if kafka.acks == "all" else int(kafka.acks),
        "processing_guarantee": "at_least_once",
        # Declare a missing topic (never recreate one); no leader topic, no tables.
        "topic_allow_declare": kafka.create_topics,
        "topic_disable_leader": True,
        "topic_replication_factor": kafka.replication_factor,
        "topic_partitions": kafka.events_partitions,
        "store": "memory://",
        "datadir": data_dir,
        "autodiscover": False,
        "cython_optimizations": tuning.cython_optimizations,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "web_enabled": True,
        "web_port": settings.http.port,
        "web_bind": settings.http.host,
        "web_host": settings.http.host,
        "web_in_thread": False,
        "web_stats_enabled": False,
        "web_graph_enabled": False,
        "web_router_enabled": False,
        "web_tables_enabled": False,
        "web_metrics_enabled": False,
    }


@dataclass
class Processor:
    """The app and the components its agents use (handy for tests and benchmarks)."""

    app: faust.App
    store: RedisStore
    models: ModelHandle
    events: EventUpdater
    catalog: CatalogUpdater
    users: UserUpdater


def build(settings: ProcessorSettings | None = None) -> Processor:
    """Build the faust app and wire agents, timers, web views and services."""
    settings = settings or get_settings()
    tuning = settings.processor
    app = ProcessorApp(
        tuning.app_id,
        fetch_max_wait_ms=tuning.fetch_max_wait_ms,
        fetch_min_bytes=tuning.fetch_min_bytes,
        **faust_config(settings),
    )
    events_topic = app.topic(
        topics.EVENTS, partitions=settings.kafka.events_partitions, internal=False
    )
    catalog_topic = app.topic(topics.CATALOG, internal=False)
    users_topic = app.topic(topics.USERS, internal=False)
    dlq_topic = app.topic(topics.DEAD_LETTER, internal=False)

    store = RedisStore(
        settings.redis,
        timeout_s=tuning.redis_timeout_s,
        trending_half_life_s=tuning.trending_half_life_hours * 3600.0,
    )
    models = ModelHandle(store)
    model_service = ModelService(
        models,
        settings.kafka,
        settings.postgres.dsn.get_secret_value(),
        poll_interval_s=tuning.model_poll_interval_s,
    )
    app.add_dependency(store)
    app.add_dependency(model_service)

    async def dead_letter(rec: Record, reason: str, error: str) -> None:
        headers = [
            ("source_topic", rec.topic.encode()),
            ("source_partition", str(rec.partition).encode()),
            ("source_offset", str(rec.offset).encode()),
            ("reason", reason.encode()),
            ("error", error.encode(errors="replace")),
        ]
        fut = await dlq_topic.send(key=rec.key, value=rec.value or b"", headers=headers)
        await fut
        metrics.PROCESSOR_DLQ.labels(rec.topic, reason).inc()
        logger.warning(
            "dead-lettered %s[%d]@%d: %s (%s)", rec.topic, rec.partition, rec.offset, reason, error
        )

    profile = settings.profile
    config = ProfileConfig(
        half_life_days=profile.half_life_days,
        max_items=profile.max_recent_items,
        max_history=profile.max_history,
        max_categories=tuning.max_categories,
        seen_ids=tuning.seen_ids,
    )
    events = EventUpdater(store, models, config, dead_letter)
    catalog = CatalogUpdater(store, dead_letter)
    users = UserUpdater(store, dead_letter)
    lag = agents.LagTracker(app)
    agents.register(
        app,
        channels={"profiles": events_topic, "catalog": catalog_topic, "users": users_topic},
        appliers={"profiles": events.apply, "catalog": catalog.apply, "users": users.apply},
        dead_letter=dead_letter,
        lag=lag,
        batch_max=tuning.batch_max,
        batch_within_s=tuning.batch_within_s,
    )
    app.timer(tuning.lag_interval_s, name="consumer_lag")(lag.report)

    started = {"value": False}

    async def mark_started() -> None:
        started["value"] = True

    app.task(mark_started)

    @app.page("/healthz")
    async def healthz(web: View, request: Request) -> Response:
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def readyz(web: View, request: Request) -> Response:
        redis_ok = await store.ping()
        metrics.DEPENDENCY_UP.labels(SERVICE, "redis").set(int(redis_ok))
        model = models.current
        assigned: dict[str, list[int]] = {}
        if started["value"]:
            for tp in app.consumer.assignment():
                assigned.setdefault(tp.topic, []).append(tp.partition)
        checks = {
            "redis": redis_ok,
            "started": started["value"],
            "model_version": model.version if model is not None else None,
            "partitions": {t: sorted(ps) for t, ps in sorted(assigned.items())},
        }
        if redis_ok and started["value"]:
            return web.json({"status": "ready", "checks": checks})
        return web.json(
            {"error": {"code": "not_ready", "message": "not ready", "details": checks}},
            status=503,
        )

    @app.page("/metrics")
    async def metrics_view(web: View, request: Request) -> Response:
        # aiohttp refuses a charset inside content_type; the exposition format is UTF-8 anyway.
        content_type = CONTENT_TYPE_LATEST.split(";", 1)[0] + "; version=0.0.4"
        return web.bytes(metrics.exposition(SERVICE), content_type=content_type)

    return Processor(app, store, models, events, catalog, users)


def create_app(settings: ProcessorSettings | None = None) -> faust.App:
    """The ``faust.App`` of the stream processor."""
    return build(settings).app
