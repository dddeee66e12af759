"""Orders: stored in Postgres and emitted as purchase events, both or neither (eventually).

A transactional outbox without an extra table: ``order_items`` holds one row per purchase
event with its deterministic event_id ``{order_id}:{line}``.

1. One transaction stores the order, its lines, and placeholder users/products rows
   (``in_catalog=false``) the foreign keys need. Nothing is published if it fails.
2. Then the purchase events are published; 202 only after the broker acked all of them.
   If the broker is down the client gets 503 and retries: the stored order is recognised,
   nothing is stored twice, and the same event_ids are published again.
3. If neither a retry nor step 2 ever happens (the process died between commit and publish,
   or the client gave up), :class:`OrderReconciler` republishes order lines the archive does
   not hold after a grace period. Duplicates are harmless: downstream counts each event_id once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from streamrec_ingest.catalog_db import CatalogDb, order_purchases
from streamrec_ingest.publisher import Publisher, keyed
from streamrec_ingest.settings import IngestOptions
from streamrec_shared import metrics, topics
from streamrec_shared.errors import RetryableError
from streamrec_shared.events import OrderIn
from streamrec_shared.tasks import cancel

logger = logging.getLogger(__name__)


async def accept_order(
    order: OrderIn, *, store: CatalogDb, publisher: Publisher, received_at: datetime
) -> dict[str, Any]:
    """Store then publish; returns the 202 body. Raises 409/503 as domain errors."""
    saved = await store.save_order(order, order.timestamp or received_at, received_at)
    events = order_purchases(order, saved.ts, saved.received_at)
    await publisher.publish(topics.EVENTS, keyed(events, "user_id"))
    metrics.INGEST_EVENTS_ACCEPTED.labels("purchase").inc(len(events))
    metrics.INGEST_CATALOG_UPDATES.labels("order").inc()
    return {
        "accepted": len(events),
        "order_id": order.order_id,
        "event_ids": [e.event_id for e in events],
        "replayed": not saved.created,
    }


class OrderReconciler:
    """Every ``interval``: republish stored order lines that never reached the archive."""

    def __init__(self, store: CatalogDb, publisher: Publisher, options: IngestOptions) -> None:
        self.store = store
        self.publisher = publisher
        self.options = options
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        """One pass; returns how many purchase events were republished."""
        events = await self.store.unpublished_order_lines(
            grace_s=self.options.order_reconcile_grace_s,
            window_s=self.options.order_reconcile_window_s,
            limit=self.options.order_reconcile_limit,
        )
        if not events:
            return 0
        await self.publisher.publish(topics.EVENTS, keyed(events, "user_id"))
        logger.info("republished %d order lines missing from the archive", len(events))
        return len(events)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.order_reconcile_interval_s)
            try:
                await self.run_once()
            except RetryableError as exc:
                logger.info("order reconcile skipped: %s", exc.message)
            except Exception:  # loop boundary: log, count, try again next time
                logger.exception("order reconcile failed")

    def start(self) -> None:
        if self.options.order_reconcile_interval_s > 0:
            self._task = asyncio.create_task(self._loop(), name="order-reconcile")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
