"""``catalog.v1`` read by the recommender: products the served model does not know yet.

Every pod reads the whole compacted topic (no consumer group, from the earliest offset: the
topic holds each product's latest state) and keeps the products that are not in the served
model, with what the content map reads (name, description, category, price, attributes). It
runs on the one consume loop, ``streamrec_shared.consumer.StreamConsumer``, as a tail reader
(``group_id=None``: nothing to commit, the pending set is rebuilt at each start). It
hands each fetched batch of such products to ``on_products`` at once (the runtime appends them
to the model's item space: ``serving.newitems``), so a product PUT through ingest is
recommendable about as fast as the broker delivers it. Products deactivated later leave the
pending set (the catalog mirror blocks them anyway).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from aiokafka.errors import KafkaError
from pydantic import ValidationError

from streamrec_recommender.serving.newitems import Product
from streamrec_shared import metrics, topics
from streamrec_shared.consumer import ConsumerSettings, Record, StreamConsumer
from streamrec_shared.events import decode_product
from streamrec_shared.settings import KafkaSettings

logger = logging.getLogger(__name__)


def product_of(raw: bytes) -> Product | None:
    """A ``catalog.v1`` record as a ``Product`` (None when it is not a product record)."""
    try:
        rec = decode_product(raw)
    except (ValidationError, ValueError):
        return None
    return Product(
        product_id=rec.product_id,
        name=rec.name,
        category=rec.category,
        price=float(rec.price),
        attributes=dict(rec.attributes),
        description=rec.description,
        active=rec.active,
    )


class CatalogFeed:
    """Products seen on ``catalog.v1`` that ``known`` does not hold, by id (latest state)."""

    def __init__(
        self,
        known: Callable[[str], bool],
        on_products: Callable[[Sequence[Product]], Awaitable[None]],
    ) -> None:
        self.known = known
        self.on_products = on_products
        self.pending: dict[str, Product] = {}

    def take(self, products: Sequence[Product]) -> list[Product]:
        """Update the pending set with a batch; the new or changed unknown products."""
        fresh: list[Product] = []
        for p in products:
            if not p.active:
                self.pending.pop(p.product_id, None)
                continue
            if self.known(p.product_id):
                continue
            self.pending[p.product_id] = p
            fresh.append(p)
        return fresh

    def _skip(self, key: bytes | None) -> bool:
        """A record of a product the model knows and nothing pends for: not even decoded (the
        whole catalogue is read at start, most of it known)."""
        if key is None:
            return False
        pid = key.decode("utf-8", "replace")
        return pid not in self.pending and self.known(pid)

    async def handle(self, records: Sequence[Record]) -> None:
        """A fetched batch: its unknown products go to ``on_products`` at once."""
        found = [
            p
            for r in records
            if r.value is not None
            and not self._skip(r.key)
            and (p := product_of(r.value)) is not None
        ]
        fresh = self.take(found)
        if fresh:
            await self.on_products(fresh)

    def consumer(self, settings: KafkaSettings) -> StreamConsumer:
        """The shared consume loop as a tail reader of ``catalog.v1`` (no group, no commits:
        the whole compacted topic at every start)."""
        return StreamConsumer(
            settings,
            ConsumerSettings(
                group_id=None, max_batch=1000, poll_timeout_ms=500, fetch_max_wait_ms=100
            ),
            {topics.CATALOG: self.handle},
            on_degraded=_count_degraded,
        )

    async def run(self, settings: KafkaSettings) -> None:
        """Consume forever (reconnecting after broker failures)."""
        await self.consumer(settings).run()


def _count_degraded(exc: BaseException) -> None:
    if isinstance(exc, KafkaError | OSError):
        metrics.RECOMMENDER_DEGRADED.labels("kafka").inc()
