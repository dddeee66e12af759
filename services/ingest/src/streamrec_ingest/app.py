"""The ingest gateway: ``create_app()`` builds the FastAPI app and its lifespan.

The lifespan starts the Kafka producer (in the background if the broker is not there yet),
opens the Postgres pool (likewise) and the order reconciler. Requests that need a dependency
which is not up get 503 + Retry-After; /readyz says which one.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from streamrec_ingest import recent
from streamrec_ingest.catalog_db import CatalogDb
from streamrec_ingest.deps import IngestState
from streamrec_ingest.known_products import KnownProducts
from streamrec_ingest.orders import OrderReconciler
from streamrec_ingest.publisher import Producer, Publisher
from streamrec_ingest.routes import catalog, events, orders, users
from streamrec_ingest.settings import IngestSettings, get_settings
from streamrec_shared import kafka, metrics, postgres, topics
from streamrec_shared.http import KeyRing, install_common

logger = logging.getLogger(__name__)

_TOO_LARGE = metrics.INGEST_EVENTS_REJECTED.labels("too_large")


def _count_too_large(scope: Mapping[str, Any]) -> None:
    if scope.get("path") == "/v1/events":
        _TOO_LARGE.inc()


def create_app(
    settings: IngestSettings | None = None,
    *,
    producer: Producer | None = None,
    pool: asyncpg.Pool | None = None,
) -> FastAPI:
    """The app. ``producer`` / ``pool`` replace the ones built from settings (tests)."""
    settings = settings or get_settings()
    options = settings.ingest

    def new_producer() -> Producer:
        if producer is not None:
            return producer
        made: Producer = kafka.producer(settings.kafka, linger_ms=options.linger_ms)
        return made

    async def create_topics() -> None:
        specs = topics.topic_specs(settings.kafka.events_partitions)
        await kafka.ensure_topics(settings.kafka, specs, attempts=1)

    async def open_pool() -> asyncpg.Pool:
        return await postgres.create_pool(settings.postgres, attempts=1)

    publisher = Publisher(
        new_producer,
        timeout_s=options.publish_timeout_s,
        retry_after_s=options.retry_after_s,
        start_retry_s=options.producer_retry_s,
        before_start=create_topics if settings.kafka.create_topics and producer is None else None,
        check_timeout_s=options.check_timeout_s,
    )
    store = CatalogDb(
        open_pool if pool is None else None,
        pool=pool,
        retry_after_s=options.retry_after_s,
        check_timeout_s=options.check_timeout_s,
    )
    state = IngestState(
        settings=settings,
        publisher=publisher,
        store=store,
        reconciler=OrderReconciler(store, publisher, options),
        known=KnownProducts(store, options.catalog_refresh_s),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.gather(publisher.start(), store.start())
        state.reconciler.start()
        state.known.start()
        recent.start(settings.redis)
        # long-lived objects out of the collector's way: shorter full collections under load
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await state.known.stop()
            await state.reconciler.stop()
            await recent.stop()
            await publisher.close()  # flushes what is in flight
            await store.close()

    app = FastAPI(
        title="streamrec ingest",
        version="1",
        lifespan=lifespan,
        description=(
            "Write API: user events, catalog and user updates, orders. Writes need an "
            "`X-API-Key` with scope events:write or catalog:write (admin covers both). "
            'Errors are `{"error": {"code", "message", "details"}}`.'
        ),
    )
    app.state.ingest = state
    app.state.keyring = KeyRing(settings.auth)

    async def readiness() -> dict[str, bool]:
        kafka_ok, pg_ok = await asyncio.gather(publisher.reachable(), store.reachable())
        return {"kafka": kafka_ok, "postgres": pg_ok}

    # the write API before the probes: routes are matched in order, events first
    app.include_router(events.router)
    app.include_router(catalog.router)
    app.include_router(orders.router)
    app.include_router(users.router)
    install_common(
        app,
        service="ingest",
        http=settings.http,
        readiness=readiness,
        on_body_rejected=_count_too_large,
    )
    _document_models(app, events.DOCUMENTED_MODELS)
    return app


def _document_models(app: FastAPI, models: tuple[type[Any], ...]) -> None:
    """Add models parsed by hand (the events body) to the OpenAPI components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in models:
            js = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in js.pop("$defs", {}).items():
                components.setdefault(name, sub)
            components.setdefault(model.__name__, js)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
