"""Reading the training window out of Postgres: interactions and the product catalogue.

The interactions of a window (millions of rows) travel as ``COPY (SELECT ...) TO STDOUT
(FORMAT binary)`` with every column fixed-width, so the stream is parsed in chunks with
``numpy.frombuffer`` instead of building a Python object per row:

- user and product ids travel as 64-bit hashes (``hashtextextended(id, 0)``), mapped back to
  positions in the ``users`` / ``products`` vocabularies, which are fetched once, with their
  hashes, in the same REPEATABLE READ snapshot. That is exact: two ids of one vocabulary with
  the same hash (odds ~k^2 / 2^65) are detected, and the load then integer-codes the ids in SQL
  with a join instead (``_ROWS_JOINED``, about twice the server time of hashing);
- the event type is its index in ``events.EVENT_TYPES``, a missing value NaN, the time epoch
  seconds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import numpy as np
from numpy.typing import NDArray

from streamrec_shared.events import EVENT_TYPES
from streamrec_trainer.dataset import Catalog, Interactions, catalog_from_records

logger = logging.getLogger(__name__)

# A window of 10M rows takes ~10-30 s to stream on a small machine: longer than the pool's
# default command timeout, which is meant for OLTP statements.
LOAD_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class Window:
    """The event-time window a model is trained on (start inclusive, end inclusive)."""

    start: datetime
    end: datetime


MAX_FUTURE_SKEW_S = 300.0
"""An event time more than this after the event's own receive time is not trusted as the
window's end (ingest refuses such events now; archives from before may hold some)."""

# Walks the ts index from the newest event down and stops at the first plausible one: the
# outliers it skips are few.
_NEWEST_PLAUSIBLE = """
SELECT ts FROM user_product_interactions
WHERE ts <= received_at + make_interval(secs => $1)
ORDER BY ts DESC LIMIT 1
"""


async def data_window(
    pool: asyncpg.Pool, window_days: float, *, max_future_skew_s: float = MAX_FUTURE_SKEW_S
) -> Window | None:
    """The last ``window_days`` of EVENT time, ending at the newest archived event whose time
    is not more than ``max_future_skew_s`` after its receive time: one event stamped in the far
    future (a wrong clock, a typo, an attack) neither moves the window away from the shop's
    data nor enters it. Without any plausible event, the newest event anchors it."""
    newest = await pool.fetchval(_NEWEST_PLAUSIBLE, max_future_skew_s)
    if newest is None:
        newest = await pool.fetchval("SELECT max(ts) FROM user_product_interactions")
    if newest is None:
        return None
    return Window(start=newest - timedelta(days=window_days), end=newest)


# Users erased (DELETE /v1/users/{id} on ingest) are never trained on, also for events of
# theirs archived after the erasure (in flight in Kafka at the time).
_USERS = """
SELECT user_id, hashtextextended(user_id, 0) FROM users u
WHERE NOT EXISTS (SELECT 1 FROM erased_users e WHERE e.user_id = u.user_id)
ORDER BY user_id COLLATE "C"
"""
_PRODUCTS = """
SELECT product_id, hashtextextended(product_id, 0) FROM products ORDER BY product_id COLLATE "C"
"""
_ROWS_HASHED = """
SELECT hashtextextended(i.user_id, 0), hashtextextended(i.product_id, 0),
       (coalesce(array_position($3::text[], i.event_type), 0) - 1)::int2,
       coalesce(i.value, 'NaN'::float8),
       extract(epoch FROM i.ts)::float8
FROM user_product_interactions i
WHERE i.ts BETWEEN $1 AND $2
  AND NOT EXISTS (SELECT 1 FROM erased_users e WHERE e.user_id = i.user_id)
"""
# codes = ranks in the vocabularies' order (the same ORDER BY, the same snapshot)
_ROWS_JOINED = """
WITH uc AS (
    SELECT user_id, (row_number() OVER (ORDER BY user_id COLLATE "C") - 1)::int4 AS code
    FROM users u
    WHERE NOT EXISTS (SELECT 1 FROM erased_users e WHERE e.user_id = u.user_id)
), pc AS (
    SELECT product_id, (row_number() OVER (ORDER BY product_id COLLATE "C") - 1)::int4 AS code
    FROM products
)
SELECT uc.code, pc.code,
       (coalesce(array_position($3::text[], i.event_type), 0) - 1)::int2,
       coalesce(i.value, 'NaN'::float8),
       extract(epoch FROM i.ts)::float8
FROM user_product_interactions i
JOIN uc ON uc.user_id = i.user_id
JOIN pc ON pc.product_id = i.product_id
WHERE i.ts BETWEEN $1 AND $2
"""


def copy_row_dtype(id_type: str) -> np.dtype[np.void]:
    """One row of the binary COPY stream: the field count, then (length, value) per column,
    big-endian; ids as ``id_type`` (">i8" hashes or ">i4" codes)."""
    return np.dtype(
        [
            ("n_fields", ">i2"),
            ("user_len", ">i4"), ("user", id_type),
            ("item_len", ">i4"), ("item", id_type),
            ("type_len", ">i4"), ("type", ">i2"),
            ("value_len", ">i4"), ("value", ">f8"),
            ("ts_len", ">i4"), ("ts", ">f8"),
        ]
    )  # fmt: skip


COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
COPY_TRAILER = b"\xff\xff"


class BinaryRowParser:
    """Parses a ``COPY ... (FORMAT binary)`` stream of fixed-width rows.

    ``dtype`` is the row layout (``copy_row_dtype``); a field ``<name>_len`` must hold the size
    of field ``<name>`` in every row (a NULL or a column of another width is an error). Feed it
    the stream in pieces of any size (``feed``, usable as asyncpg's ``output``); once
    ``chunk_bytes`` have accumulated it hands every whole row parsed so far, a structured array
    (m,), to ``on_rows``, so the raw stream never sits in memory at once.
    """

    def __init__(
        self,
        dtype: np.dtype[np.void],
        on_rows: Callable[[NDArray[np.void]], None],
        chunk_bytes: int = 8 << 20,
    ) -> None:
        assert dtype.names is not None
        self.dtype = dtype
        self.on_rows = on_rows
        self.chunk_bytes = chunk_bytes
        self.n_fields = sum(1 for name in dtype.names if name.endswith("_len"))
        self.lengths = {
            name: dtype[name.removesuffix("_len")].itemsize
            for name in dtype.names
            if name.endswith("_len")
        }
        self.rows = 0
        self._buf = bytearray()
        self._header_done = False

    async def feed(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) >= self.chunk_bytes:
            self._drain()

    def _header(self) -> bool:
        if len(self._buf) < 19:
            return False
        if bytes(self._buf[:11]) != COPY_SIGNATURE:
            raise ValueError("not a binary COPY stream")
        extension = int.from_bytes(self._buf[15:19], "big")
        if len(self._buf) < 19 + extension:
            return False
        del self._buf[: 19 + extension]
        self._header_done = True
        return True

    def _drain(self) -> None:
        if not self._header_done and not self._header():
            return
        count = len(self._buf) // self.dtype.itemsize
        if count == 0:
            return
        view = np.frombuffer(self._buf, dtype=self.dtype, count=count)
        if not (view["n_fields"] == self.n_fields).all() or any(
            not (view[name] == size).all() for name, size in self.lengths.items()
        ):
            raise ValueError("unexpected row layout (a NULL or a column of another width)")
        rows = view.copy()
        del view  # release the export of the buffer before resizing it
        del self._buf[: count * self.dtype.itemsize]
        self.rows += count
        self.on_rows(rows)

    def close(self) -> None:
        """End of the stream: parse what is left and check the trailer."""
        self._drain()
        if not self._header_done:
            raise ValueError("binary COPY stream without a header")
        if bytes(self._buf) != COPY_TRAILER:
            raise ValueError(f"binary COPY stream ends with {len(self._buf)} unparsed bytes")
        self._buf.clear()


class HashCollision(Exception):
    """Two ids of one vocabulary share a 64-bit hash: the ids must be coded in SQL instead."""


def hash_lookup(hashes: NDArray[np.int64]) -> Callable[[NDArray[np.int64]], NDArray[np.int32]]:
    """A map from id hashes to positions in the vocabulary whose hashes (k,) are given.

    Raises ``HashCollision`` when two vocabulary entries share a hash; the map raises
    ``ValueError`` for a hash not in the vocabulary.
    """
    order = np.argsort(hashes, kind="stable")
    ordered = hashes[order]
    if ordered.size > 1 and bool((ordered[1:] == ordered[:-1]).any()):
        raise HashCollision("two ids share a hash")

    def lookup(query: NDArray[np.int64]) -> NDArray[np.int32]:
        if ordered.size == 0:
            if query.size:
                raise ValueError("an id is not in the vocabulary")
            return np.zeros(0, dtype=np.int32)
        pos = np.minimum(np.searchsorted(ordered, query), ordered.size - 1)
        if not (ordered[pos] == query).all():
            raise ValueError("an id is not in the vocabulary")
        return order[pos].astype(np.int32)

    return lookup


Columns = tuple[
    NDArray[np.int32], NDArray[np.int32], NDArray[np.int16], NDArray[np.float64],
    NDArray[np.float64],
]  # fmt: skip


async def _copy_rows(
    conn: asyncpg.Connection,
    window: Window,
    user_hashes: NDArray[np.int64] | None,
    item_hashes: NDArray[np.int64] | None,
) -> Columns:
    """(user (n,) int32, item (n,) int32, type (n,) int16, value (n,) float64, ts (n,) float64)
    of the window; ids as positions in the vocabularies. With hashes: the hashed query, else
    the joined one."""
    chunks: list[Columns] = []
    if user_hashes is not None and item_hashes is not None:
        query, dtype = _ROWS_HASHED, copy_row_dtype(">i8")
        to_user, to_item = hash_lookup(user_hashes), hash_lookup(item_hashes)
    else:
        query, dtype = _ROWS_JOINED, copy_row_dtype(">i4")

        def to_user(codes: NDArray[np.int64]) -> NDArray[np.int32]:
            return codes.astype(np.int32)

        to_item = to_user

    def take(rows: NDArray[np.void]) -> None:
        chunks.append(
            (
                to_user(rows["user"].astype(np.int64)),
                to_item(rows["item"].astype(np.int64)),
                rows["type"].astype(np.int16),
                rows["value"].astype(np.float64),
                rows["ts"].astype(np.float64),
            )
        )

    parser = BinaryRowParser(dtype, take)
    await conn.copy_from_query(
        query,
        window.start,
        window.end,
        list(EVENT_TYPES),
        output=parser.feed,
        format="binary",
        timeout=LOAD_TIMEOUT_S,
    )
    parser.close()
    if not chunks:
        return (
            np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int16),
            np.zeros(0, np.float64), np.zeros(0, np.float64),
        )  # fmt: skip
    out = tuple(np.concatenate([c[k] for c in chunks]) for k in range(5))
    chunks.clear()
    return out  # type: ignore[return-value]


def _vocabulary(records: list[asyncpg.Record]) -> tuple[NDArray[np.str_], NDArray[np.int64]]:
    ids = np.asarray([r[0] for r in records], dtype=np.str_)
    return ids, np.fromiter((r[1] for r in records), dtype=np.int64, count=len(records))


async def load_interactions(pool: asyncpg.Pool, window: Window) -> Interactions:
    """Every archived event in ``window`` (see the module docstring for how)."""
    started = time.perf_counter()
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        user_vocab, user_hashes = _vocabulary(await conn.fetch(_USERS, timeout=LOAD_TIMEOUT_S))
        item_vocab, item_hashes = _vocabulary(await conn.fetch(_PRODUCTS, timeout=LOAD_TIMEOUT_S))
        try:
            user, item, kind, value, ts = await _copy_rows(conn, window, user_hashes, item_hashes)
        except HashCollision:
            logger.warning("an id hash collision: coding ids with a join instead")
            user, item, kind, value, ts = await _copy_rows(conn, window, None, None)
    known = kind >= 0
    if not known.all():
        logger.warning("skipping %d events of unknown type", int((~known).sum()))
        user, item, kind, value, ts = user[known], item[known], kind[known], value[known], ts[known]
    interactions = Interactions.from_codes(
        user_codes=user,
        user_vocab=user_vocab,
        item_codes=item,
        item_vocab=item_vocab,
        type_codes=kind,
        type_vocab=np.asarray(EVENT_TYPES, dtype=np.str_),
        values=value,
        timestamps=ts,
    )
    logger.info(
        "loaded %d interactions (%d users, %d products known) in %.1fs",
        len(interactions), user_vocab.size, item_vocab.size, time.perf_counter() - started,
    )  # fmt: skip
    return interactions


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
