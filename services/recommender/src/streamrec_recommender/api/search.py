"""Catalog reads for shop frontends: typo-tolerant product search, product lookup, categories.

``GET /v1/products/search?q=&category=&k=&user_id=`` corrects each word of ``q`` against the
catalog's word dictionary (pg_trgm similarity, GIN trigram index; migration 0006), so ``ketle``
finds ``kettle``, then matches the corrected words with the products' full-text index
(``adapters.catalog_search``). Without ``q`` it lists a category. With ``user_id`` the matches
are re-ranked by that user's personal ALS scores (trained factor, else the live profile's vector
or a fold-in of its items) and category affinity. Postgres down -> 503 with ``Retry-After``;
bad params -> 422.

``GET /v1/products?ids=a,b`` returns catalog rows (names, prices) for ids a page shows, and
``GET /v1/categories`` the categories with their number of active products.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Annotated, Any

import asyncpg
import numpy as np
from fastapi import APIRouter, Query, Request
from numpy.typing import NDArray

from streamrec_recommender.adapters.catalog_search import CANDIDATE_THRESHOLD, CatalogSearch
from streamrec_recommender.adapters.redis_state import RedisUnavailableError
from streamrec_recommender.runtime.recommender import Recommender
from streamrec_recommender.serving.model import ServingModel
from streamrec_shared.errors import InvalidInput, RetryableError
from streamrec_shared.profile import UserProfile

logger = logging.getLogger(__name__)

router = APIRouter(tags=["catalog"])

SEARCH_DEPTH = 200
"""Matches read per personalised search before re-ranking and cutting to ``k``."""
PERSONAL_WEIGHT = 0.5
"""How much the user's normalised personal score can raise a match: sim * (1 + w * p)."""

_BROWSE = """
SELECT product_id, name, category_id, price, in_stock, active, attributes, description,
       1.0::real AS similarity
FROM products
WHERE category_id = $1 AND in_catalog AND (active OR $3)
ORDER BY in_stock DESC, name, product_id
LIMIT $2
"""
_LOOKUP = (
    "SELECT product_id, name, category_id, price, in_stock, active, attributes, description"
    " FROM products WHERE product_id = ANY($1::text[])"
)
_CATEGORIES = """
SELECT category_id, count(*) AS products FROM products
WHERE active AND in_catalog AND category_id IS NOT NULL
GROUP BY category_id ORDER BY category_id
"""


class SearchUnavailableError(RetryableError):
    """Postgres cannot be reached: the catalog reads answer 503."""

    code = "unavailable"


@dataclass
class _PoolHolder:
    dsn: str
    pool: asyncpg.Pool | None = None
    lock: asyncio.Lock | None = None
    catalog: CatalogSearch = field(default_factory=CatalogSearch)

    async def get(self) -> asyncpg.Pool:
        if self.pool is not None:
            return self.pool
        if self.lock is None:
            self.lock = asyncio.Lock()
        async with self.lock:
            if self.pool is None:
                try:
                    self.pool = await asyncpg.create_pool(
                        self.dsn,
                        min_size=0,
                        max_size=4,
                        timeout=2.0,
                        command_timeout=3.0,
                        server_settings={"pg_trgm.similarity_threshold": str(CANDIDATE_THRESHOLD)},
                        reset=_keep_session,
                    )
                except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                    raise _unavailable(exc) from exc
        return self.pool


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool ``reset``: nothing. These connections only run single read statements (no SET,
    LISTEN, cursors or advisory locks; an open transaction is still rolled back by the pool),
    so asyncpg's default reset query would only add a round trip to every statement."""


def _unavailable(exc: BaseException) -> SearchUnavailableError:
    logger.warning("catalog search: Postgres unavailable (%s)", exc)
    return SearchUnavailableError("product search is unavailable: Postgres unreachable")


def _holder(request: Request) -> _PoolHolder:
    state = request.app.state
    holder: _PoolHolder | None = getattr(state, "search_pool", None)
    if holder is None:
        holder = state.search_pool = _PoolHolder(state.settings.postgres.dsn.get_secret_value())
    return holder


async def _fetch(request: Request, sql: str, *args: Any) -> list[asyncpg.Record]:
    pool = await _holder(request).get()
    try:
        rows: list[asyncpg.Record] = await pool.fetch(sql, *args, timeout=3.0)
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, TimeoutError) as exc:
        raise _unavailable(exc) from exc
    return rows


def product_json(row: asyncpg.Record) -> dict[str, Any]:
    attributes = row["attributes"]
    if isinstance(attributes, str):
        attributes = json.loads(attributes)
    price = row["price"]
    return {
        "product_id": row["product_id"],
        "name": row["name"],
        "category": row["category_id"],
        "price": None if price is None else float(price),
        "in_stock": row["in_stock"],
        "active": row["active"],
        "attributes": attributes or {},
        "description": row["description"],
    }


def _ids(raw: str) -> list[str]:
    ids = [p for p in (s.strip() for s in raw.split(",")) if p]
    if not ids:
        raise InvalidInput("ids: give at least one product id", details={"field": "ids"})
    if len(ids) > 200:
        raise InvalidInput("ids: at most 200 product ids", details={"field": "ids"})
    return ids


def personal_scores(
    model: ServingModel | None,
    user_id: str,
    prof: UserProfile | None,
    product_ids: list[str],
) -> NDArray[np.float64]:
    """(len(product_ids),) float64 in [0, 1]: the user's ALS scores of the products, min-max
    normalised over them (0 for products the model does not know), or zeros when the user has
    no vector. Uses the trained factor, else the live profile's vector for this model version,
    else a fold-in of the profile's items."""
    out = np.zeros(len(product_ids), dtype=np.float64)
    if model is None:
        return out
    vec = model.user_factor(user_id)
    if vec is None and prof is not None:
        if prof.vector is not None and prof.model_version == model.version:
            vec = prof.vector
        else:
            vec = model.fold_in(prof.items, prof.weights)
    if vec is None:
        return out
    known = [(n, model.index_of.get(p)) for n, p in enumerate(product_ids)]
    rows = [(n, i) for n, i in known if i is not None]
    if not rows:
        return out
    scores = model.item_factors[[i for _, i in rows]].astype(np.float64) @ np.asarray(
        vec, dtype=np.float64
    )
    lo, hi = float(scores.min()), float(scores.max())
    span = hi - lo
    normed = (scores - lo) / span if span > 0 else np.ones_like(scores)
    for (n, _), s in zip(rows, normed.tolist(), strict=True):
        out[n] = s
    return out


def rerank(
    items: list[dict[str, Any]],
    personal: NDArray[np.float64],
    affinity: dict[str, float],
) -> list[dict[str, Any]]:
    """Order matches by ``similarity * (1 + w * (personal + category affinity share) / 2)``;
    ``items`` carry ``similarity``; each gets its ``score``. Stable for equal scores."""
    top = max(affinity.values(), default=0.0)
    for item, p in zip(items, personal.tolist(), strict=True):
        aff = affinity.get(item["category"] or "", 0.0) / top if top > 0 else 0.0
        item["score"] = round(item["similarity"] * (1.0 + PERSONAL_WEIGHT * (p + aff) / 2.0), 6)
    return sorted(items, key=lambda it: -float(it["score"]))


@router.get("/v1/products/search")
async def search(
    request: Request,
    q: Annotated[str | None, Query(max_length=200, description="search text (typos ok)")] = None,
    category: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    k: Annotated[int, Query(ge=1, le=100, description="number of products, 1..100")] = 20,
    user_id: Annotated[
        str | None, Query(min_length=1, max_length=128, description="re-rank for this user")
    ] = None,
    include_inactive: Annotated[bool, Query(description="also deactivated products")] = False,
) -> dict[str, Any]:
    """Products matching the words of ``q`` (each corrected by trigram similarity against the
    words of names, categories and attribute values), best first; without ``q``, the products
    of ``category``. ``user_id`` re-ranks the matches by that user's personal scores
    (``personalized: true`` in the answer)."""
    started = time.perf_counter()
    text = (q or "").strip().lower()
    if not text and category is None:
        raise InvalidInput("q: give a search text or a category", details={"field": "q"})
    depth = max(k * 5, SEARCH_DEPTH) if user_id else k
    if text:
        rows = await _holder(request).catalog.search(
            functools.partial(_fetch, request),
            text,
            category=category,
            limit=depth,
            include_inactive=include_inactive,
        )
    else:
        rows = await _fetch(request, _BROWSE, category, depth, include_inactive)
    items = [{**product_json(r), "similarity": round(float(r["similarity"]), 4)} for r in rows]
    personalized = False
    if user_id and items:
        rec: Recommender = request.app.state.recommender
        prof: UserProfile | None = None
        try:
            prof = (await rec.state.read_user(user_id, None)).profile
        except RedisUnavailableError:  # re-rank from the trained model alone
            logger.warning("search: profile of %s unavailable (Redis)", user_id)
        affinity = dict(prof.category_affinity) if prof is not None else {}
        personal = personal_scores(rec.model, user_id, prof, [it["product_id"] for it in items])
        personalized = bool(personal.any() or affinity)
        items = rerank(items, personal, affinity)
    else:
        for it in items:
            it["score"] = it["similarity"]
    return {
        "q": q,
        "category": category,
        "user_id": user_id,
        "personalized": personalized,
        "items": items[:k],
        "latency_ms": round((time.perf_counter() - started) * 1000.0, 3),
    }


@router.get("/v1/products")
async def products(
    request: Request,
    ids: Annotated[str, Query(min_length=1, max_length=8192, description="a,b,c (<= 200)")],
) -> dict[str, Any]:
    """Catalog rows of the given products (unknown ids are left out), in the order asked."""
    wanted = _ids(ids)
    rows = {r["product_id"]: product_json(r) for r in await _fetch(request, _LOOKUP, wanted)}
    return {"products": [rows[p] for p in wanted if p in rows]}


@router.get("/v1/categories")
async def categories(request: Request) -> dict[str, Any]:
    """Categories that have active products, with how many."""
    rows = await _fetch(request, _CATEGORIES)
    return {"categories": [{"category": r["category_id"], "products": r["products"]} for r in rows]}
