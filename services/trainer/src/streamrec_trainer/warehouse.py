"""Reading the training window out of Postgres: interactions and the product catalogue."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np

from streamrec_trainer.dataset import Catalog, Interactions, catalog_from_records

logger = logging.getLogger(__name__)

_CHUNK = 50_000


@dataclass(frozen=True)
class Window:
    """The event-time window a model is trained on (start inclusive, end inclusive)."""

    start: datetime
    end: datetime


async def data_window(pool: asyncpg.Pool, window_days: float) -> Window | None:
    """The last ``window_days`` of EVENT time, ending at the newest archived event."""
    newest = await pool.fetchval("SELECT max(ts) FROM user_product_interactions")
    if newest is None:
        return None
    return Window(start=newest - timedelta(days=window_days), end=newest)


async def load_interactions(pool: asyncpg.Pool, window: Window) -> Interactions:
    """Every archived event in ``window``, streamed with a server-side cursor."""
    users: list[str] = []
    items: list[str] = []
    types: list[str] = []
    values: list[float] = []
    stamps: list[float] = []
    async with pool.acquire() as conn, conn.transaction():
        cursor = conn.cursor(
            """SELECT user_id, product_id, event_type, value, extract(epoch FROM ts)::float8
               FROM user_product_interactions WHERE ts BETWEEN $1 AND $2""",
            window.start,
            window.end,
            prefetch=_CHUNK,
        )
        async for row in cursor:
            users.append(row[0])
            items.append(row[1])
            types.append(row[2])
            values.append(math.nan if row[3] is None else row[3])
            stamps.append(row[4])
    return Interactions(
        user_ids=np.asarray(users, dtype=np.str_),
        item_ids=np.asarray(items, dtype=np.str_),
        event_types=np.asarray(types, dtype=np.str_),
        values=np.asarray(values, dtype=np.float64),
        timestamps=np.asarray(stamps, dtype=np.float64),
    )


async def load_catalog(pool: asyncpg.Pool) -> tuple[Catalog, set[str]]:
    """The product table, and the ids that must not be recommended (inactive or out of stock)."""
    rows = await pool.fetch(
        """SELECT product_id, category_id, price::float8 AS price, name, description,
                  attributes, active, in_stock FROM products WHERE in_catalog"""
    )
    records = [
        {
            "product_id": r["product_id"],
            "category": r["category_id"] or "",
            "price": r["price"],
            "name": r["name"] or "",
            "description": r["description"] or "",
            "attributes": json.loads(r["attributes"]) if r["attributes"] else {},
        }
        for r in rows
    ]
    unavailable = {r["product_id"] for r in rows if not (r["active"] and r["in_stock"])}
    return catalog_from_records(records), unavailable


def epoch(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)
