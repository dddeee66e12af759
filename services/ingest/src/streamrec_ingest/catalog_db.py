"""What ingest keeps in Postgres: catalog rows (for the trainer's content model), users, orders.

Kafka stays the source of truth for catalog and user updates: rows are upserted after the
broker acknowledged the record, guarded by ``updated_at`` so an older update never overwrites a
newer one. Orders are the exception: they are stored first, in one transaction with their
lines, and ``order_items`` (one row per purchase event, with its deterministic event_id) is the
outbox the purchase events are published from; see :mod:`streamrec_ingest.orders`.

Connection trouble maps to ``RetryableError`` (503); the pool is opened in the background when
Postgres is not there at start, so the event path (which never touches Postgres) keeps working.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from streamrec_shared.errors import Conflict, RetryableError
from streamrec_shared.events import OrderIn, ProductRecord, UserEvent, UserRecord
from streamrec_shared.tasks import cancel, retry_every

logger = logging.getLogger(__name__)

_UNAVAILABLE = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError)

_UPSERT_CATEGORIES = """
INSERT INTO categories (category_id, name)
SELECT DISTINCT c, c FROM unnest($1::text[]) AS c ORDER BY 1
ON CONFLICT (category_id) DO NOTHING
"""
_UPSERT_PRODUCTS = """
INSERT INTO products AS p (product_id, name, category_id, price, in_stock, active, attributes,
                           description, in_catalog, updated_at)
SELECT u.product_id, u.name, u.category, u.price, u.in_stock, u.active, u.attributes::jsonb,
       u.description, true, u.updated_at
FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::bool[], $6::bool[],
            $7::text[], $8::text[], $9::timestamptz[])
     AS u(product_id, name, category, price, in_stock, active, attributes, description, updated_at)
ORDER BY u.product_id
ON CONFLICT (product_id) DO UPDATE SET
    name = EXCLUDED.name, category_id = EXCLUDED.category_id, price = EXCLUDED.price,
    in_stock = EXCLUDED.in_stock, active = EXCLUDED.active, attributes = EXCLUDED.attributes,
    description = EXCLUDED.description, in_catalog = true, updated_at = EXCLUDED.updated_at
WHERE p.updated_at <= EXCLUDED.updated_at OR NOT p.in_catalog
"""
_UPSERT_USER = """
INSERT INTO users AS u (user_id, attributes, updated_at) VALUES ($1, $2::jsonb, $3)
ON CONFLICT (user_id) DO UPDATE SET attributes = EXCLUDED.attributes,
                                    updated_at = EXCLUDED.updated_at
WHERE u.updated_at <= EXCLUDED.updated_at OR u.attributes = '{}'::jsonb
"""
_PLACEHOLDER_USER = "INSERT INTO users (user_id) VALUES ($1) ON CONFLICT DO NOTHING"
_PLACEHOLDER_PRODUCTS = """
INSERT INTO products (product_id, in_catalog)
SELECT DISTINCT p, false FROM unnest($1::text[]) AS p ORDER BY 1
ON CONFLICT DO NOTHING
"""
_INSERT_ORDER = """
INSERT INTO orders (order_id, user_id, ts, total, created_at) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (order_id) DO NOTHING
RETURNING order_id
"""
_INSERT_LINES = """
INSERT INTO order_items (order_id, line_no, product_id, quantity, price, event_id)
SELECT $1, l.line_no, l.product_id, l.quantity, l.price, l.event_id
FROM unnest($2::int[], $3::text[], $4::int[], $5::float8[], $6::text[])
     AS l(line_no, product_id, quantity, price, event_id)
"""
_UNPUBLISHED_LINES = """
SELECT o.order_id, o.user_id, o.ts, o.created_at, i.product_id, i.quantity,
       i.price::float8 AS price, i.event_id
FROM orders o
JOIN order_items i USING (order_id)
LEFT JOIN user_product_interactions a ON a.event_id = i.event_id
WHERE a.event_id IS NULL
  AND o.user_id <> 'erased user'
  AND o.created_at < now() - make_interval(secs => $1)
  AND o.created_at > now() - make_interval(secs => $2)
ORDER BY o.created_at, i.line_no
LIMIT $3
"""
ERASED_USER = "erased user"
"""The user an erased user's orders are given (migration 0004; no API id has whitespace)."""
_ERASE = (
    "INSERT INTO erased_users (user_id, erased_at) VALUES ($1, $2)"
    " ON CONFLICT (user_id) DO UPDATE SET erased_at = EXCLUDED.erased_at",
    "UPDATE orders SET user_id = 'erased user' WHERE user_id = $1",
    "DELETE FROM user_product_interactions WHERE user_id = $1",
    "DELETE FROM users WHERE user_id = $1",
)
ERASE_ATTEMPTS = 5
_CATALOG_IDS = """
SELECT product_id, updated_at FROM products WHERE in_catalog AND updated_at >= $1
"""
_RECONCILE_LOCK = 74_651_202  # pg_try_advisory_lock key: one reconciler across ingest pods


@dataclass(frozen=True)
class SavedOrder:
    """An order as stored: ``created`` is false when an identical order was stored before."""

    created: bool
    ts: datetime
    received_at: datetime


def order_purchases(order: OrderIn, ts: datetime, received_at: datetime) -> list[UserEvent]:
    """One purchase event per line, event_id ``{order_id}:{line}`` (1-based), value=quantity."""
    return [
        UserEvent.model_construct(
            event_id=event_id,
            user_id=order.user_id,
            event_type="purchase",
            product_id=item.product_id,
            timestamp=ts,
            received_at=received_at,
            value=float(item.quantity),
            price=item.price,
            context={"order_id": order.order_id},
        )
        for event_id, item in zip(order.event_ids(), order.items, strict=True)
    ]


class CatalogDb:
    """Postgres access for ingest. ``open_pool`` is called until it succeeds."""

    def __init__(
        self,
        open_pool: Callable[[], Awaitable[asyncpg.Pool]] | None,
        *,
        pool: asyncpg.Pool | None = None,
        retry_after_s: float = 1.0,
        reconnect_s: float = 2.0,
        check_timeout_s: float = 1.0,
    ) -> None:
        self._open_pool = open_pool
        self._pool = pool
        self._owns_pool = pool is None
        self.retry_after_s = retry_after_s
        self.reconnect_s = reconnect_s
        self.check_timeout_s = check_timeout_s
        self._opener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the pool now if Postgres is there; else keep trying in the background."""
        if self._pool is not None or self._open_pool is None:
            return
        if not await self._try_open():
            self._opener = asyncio.create_task(self._keep_opening(), name="pg-open")

    async def _try_open(self) -> bool:
        assert self._open_pool is not None
        try:
            self._pool = await self._open_pool()
        except (*_UNAVAILABLE, asyncpg.CannotConnectNowError) as exc:
            logger.warning("Postgres unavailable (%s); catalog and order writes get 503", exc)
            return False
        return True

    async def _keep_opening(self) -> None:
        await retry_every(self.reconnect_s, self._try_open)

    async def close(self) -> None:
        await cancel(self._opener)
        if self._pool is not None and self._owns_pool:
            await self._pool.close()
        self._pool = None

    @contextlib.asynccontextmanager
    async def _conn(self, *, transaction: bool = True) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection (in a transaction); unavailability becomes RetryableError."""
        self.require()
        assert self._pool is not None
        try:
            async with self._pool.acquire() as conn:
                if transaction:
                    async with conn.transaction():
                        yield conn
                else:
                    yield conn
        except _UNAVAILABLE as exc:
            raise RetryableError(
                f"database unavailable: {type(exc).__name__}", retry_after=self.retry_after_s
            ) from None

    @property
    def connected(self) -> bool:
        """The pool is open (Postgres may still be down: calls then raise RetryableError)."""
        return self._pool is not None

    def require(self) -> None:
        """Raise 503 now if the pool is not open (before anything is published)."""
        if self._pool is None:
            raise RetryableError(
                "database unavailable: not connected yet", retry_after=self.retry_after_s
            )

    async def reachable(self) -> bool:
        if self._pool is None:
            return False
        try:
            value = await self._pool.fetchval("SELECT 1", timeout=self.check_timeout_s)
        except (*_UNAVAILABLE, asyncpg.PostgresError):
            return False
        return bool(value == 1)

    # --- catalog ----------------------------------------------------------------------------
    async def upsert_products(self, records: Sequence[ProductRecord]) -> None:
        """Upsert categories and products (in_catalog=true); the last record per id wins."""
        latest = {r.product_id: r for r in records}
        rows = sorted(latest.values(), key=lambda r: r.product_id)
        async with self._conn() as conn:
            await conn.execute(_UPSERT_CATEGORIES, [r.category for r in rows])
            await conn.execute(
                _UPSERT_PRODUCTS,
                [r.product_id for r in rows],
                [r.name for r in rows],
                [r.category for r in rows],
                [r.price for r in rows],
                [r.in_stock for r in rows],
                [r.active for r in rows],
                [json.dumps(r.attributes) for r in rows],
                [r.description for r in rows],
                [r.updated_at for r in rows],
            )

    async def get_product(self, product_id: str) -> dict[str, Any] | None:
        """The stored row of a product (placeholders included), or None."""
        async with self._conn(transaction=False) as conn:
            row = await conn.fetchrow(
                "SELECT product_id, name, category_id, price::float8 AS price, in_stock, active,"
                " attributes::text AS attributes, description, in_catalog"
                " FROM products WHERE product_id = $1",
                product_id,
            )
        if row is None:
            return None
        out = dict(row)
        out["attributes"] = json.loads(out["attributes"])
        return out

    async def deactivate(self, product_id: str, updated_at: datetime) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "UPDATE products SET active = false, updated_at = $2"
                " WHERE product_id = $1 AND updated_at <= $2",
                product_id,
                updated_at,
            )

    async def upsert_user(self, record: UserRecord) -> None:
        async with self._conn() as conn:
            await conn.execute(
                _UPSERT_USER, record.user_id, json.dumps(record.attributes), record.updated_at
            )

    async def catalog_product_ids(self, since: datetime) -> tuple[list[str], datetime | None]:
        """Ids of the products the catalog described (``in_catalog``) updated at or after
        ``since``, and the newest ``updated_at`` among them (None when there are none)."""
        async with self._conn(transaction=False) as conn:
            rows = await conn.fetch(_CATALOG_IDS, since)
        newest = max((r["updated_at"] for r in rows), default=None)
        return [r["product_id"] for r in rows], newest

    async def erase_user(self, user_id: str, erased_at: datetime) -> dict[str, int]:
        """Forget a user in one transaction: record the id in ``erased_users``, give their
        orders to ``ERASED_USER``, delete their archived events and their ``users`` row.
        Idempotent. Returns the rows changed: orders, interactions, users.

        The archive may commit events of the user between the two deletes (they were in flight
        when the erasure came): the ``users`` delete then meets their foreign key. The whole
        transaction is tried again, and deletes those rows too (the warehouse skips any that
        arrive later)."""
        for attempt in range(ERASE_ATTEMPTS):
            try:
                async with self._conn() as conn:
                    await conn.execute(_ERASE[0], user_id, erased_at)
                    counts = [await conn.execute(sql, user_id) for sql in _ERASE[1:]]
                break
            except asyncpg.ForeignKeyViolationError as exc:
                if attempt + 1 == ERASE_ATTEMPTS:
                    raise RetryableError(
                        "user_id: events of this user are still being archived; retry",
                        retry_after=1.0,
                    ) from exc
                logger.info("erasure of %s met newly archived events; again", user_id)
        orders, interactions, users = (int(c.rsplit(" ", 1)[-1]) for c in counts)
        return {"orders": orders, "interactions": interactions, "users": users}

    # --- orders -----------------------------------------------------------------------------
    async def save_order(self, order: OrderIn, ts: datetime, received_at: datetime) -> SavedOrder:
        """Store the order and its lines in one transaction (placeholders for the FKs first).

        An order_id stored before with the same user and lines is a retry: nothing changes and
        the stored time is returned, so the retry republishes identical events. A different
        order under a stored order_id is a ``Conflict`` (409).
        """
        event_ids = order.event_ids()
        async with self._conn() as conn:
            await conn.execute(_PLACEHOLDER_USER, order.user_id)
            await conn.execute(_PLACEHOLDER_PRODUCTS, [i.product_id for i in order.items])
            inserted = await conn.fetchval(
                _INSERT_ORDER, order.order_id, order.user_id, ts, order.total, received_at
            )
            if inserted is not None:
                await conn.execute(
                    _INSERT_LINES,
                    order.order_id,
                    list(range(1, len(order.items) + 1)),
                    [i.product_id for i in order.items],
                    [i.quantity for i in order.items],
                    [i.price for i in order.items],
                    event_ids,
                )
                return SavedOrder(created=True, ts=ts, received_at=received_at)
            stored = await conn.fetchrow(
                "SELECT user_id, ts, created_at FROM orders WHERE order_id = $1", order.order_id
            )
            lines = await conn.fetch(
                "SELECT product_id, quantity, price::float8 AS price FROM order_items"
                " WHERE order_id = $1 ORDER BY line_no",
                order.order_id,
            )
        assert stored is not None
        same = stored["user_id"] == order.user_id and [
            (r["product_id"], r["quantity"], round(r["price"], 4)) for r in lines
        ] == [(i.product_id, i.quantity, round(i.price, 4)) for i in order.items]
        if not same:
            raise Conflict(
                f"order_id: order '{order.order_id}' was stored before with other contents",
                details={"field": "order_id", "order_id": order.order_id},
            )
        return SavedOrder(created=False, ts=stored["ts"], received_at=stored["created_at"])

    async def unpublished_order_lines(
        self, *, grace_s: float, window_s: float, limit: int
    ) -> list[UserEvent] | None:
        """Purchase events of stored orders that the archive does not have yet.

        Returns None when another ingest instance holds the reconcile lock.
        """
        async with self._conn(transaction=False) as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _RECONCILE_LOCK):
                return None
            try:
                rows = await conn.fetch(_UNPUBLISHED_LINES, grace_s, window_s, limit)
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _RECONCILE_LOCK)
        return [
            UserEvent.model_construct(
                event_id=r["event_id"],
                user_id=r["user_id"],
                event_type="purchase",
                product_id=r["product_id"],
                timestamp=r["ts"],
                received_at=r["created_at"],
                value=float(r["quantity"]),
                price=r["price"],
                context={"order_id": r["order_id"]},
            )
            for r in rows
        ]
