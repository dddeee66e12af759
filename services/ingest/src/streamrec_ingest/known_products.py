"""The ids of the products the catalog has described, in memory, for the events path.

``POST /v1/events`` says in its 202 which product ids the catalog has never described
(``unknown_product_ids``); it must not cost the hot path a round trip, so each worker keeps the
set: loaded from Postgres once the pool is open, extended by this worker's catalog writes at
once, and refreshed every ``catalog_refresh_s`` with what the other workers (or pods) wrote
since (``updated_at`` minus a margin, so a write committed late is not missed). A lookup is
one set membership test per distinct product id of the request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg

from streamrec_ingest.catalog_db import CatalogDb
from streamrec_shared.errors import RetryableError
from streamrec_shared.tasks import cancel

logger = logging.getLogger(__name__)

# a write whose transaction commits this long after its updated_at is still picked up
_MARGIN = timedelta(minutes=5)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class KnownProducts:
    """The catalog's product ids of this worker; ``None`` until first loaded."""

    def __init__(self, store: CatalogDb, refresh_s: float) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self.ids: set[str] | None = None
        self._since = _EPOCH
        self._task: asyncio.Task[None] | None = None

    def unknown(self, product_ids: Iterable[str]) -> list[str] | None:
        """The distinct ids of ``product_ids`` the catalog has not described, in first-seen
        order; None while the set is not loaded (Postgres not reached yet)."""
        known = self.ids
        if known is None:
            return None
        return [p for p in dict.fromkeys(product_ids) if p not in known]

    def add(self, product_ids: Sequence[str]) -> None:
        """Products this worker just wrote to the catalog."""
        if self.ids is not None:
            self.ids.update(product_ids)

    async def refresh(self) -> bool:
        """Fetch what changed since the last refresh (everything the first time)."""
        try:
            ids, newest = await self.store.catalog_product_ids(self._since - _MARGIN)
        except (RetryableError, OSError, asyncpg.PostgresError) as exc:
            logger.warning("catalog ids not refreshed: %s", exc)
            return False
        if self.ids is None:
            self.ids = set(ids)
            logger.info("loaded %d catalog product ids", len(ids))
        else:
            self.ids.update(ids)
        if newest is not None:
            self._since = max(self._since, newest)
        return True

    async def _run(self) -> None:
        while True:
            if self.store.connected:
                await self.refresh()
            await asyncio.sleep(self.refresh_s if self.ids is not None else 1.0)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="known-products")

    async def stop(self) -> None:
        await cancel(self._task)
