"""A synthetic shop for the demo, tests and benchmarks: a catalog and event history with structure.

Users have one or two favourite categories and a taste vector; products have a category, a
Zipf-like popularity and a latent vector. Users browse (view, click), some add to cart and some
buy, mostly within their categories, so a model that learns co-occurrence beats popularity.
Deterministic for a given seed; event time starts at ``start`` (not the wall clock).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

CATEGORIES = (
    "books", "electronics", "garden", "kitchen", "toys", "sports", "beauty", "fashion",
    "music", "office", "pets", "tools",
)  # fmt: skip
_ADJECTIVES = ("classic", "smart", "compact", "deluxe", "eco", "vintage", "pro", "mini", "soft")
_COLOURS = ("red", "blue", "green", "black", "white", "silver", "pink", "yellow")
DEFAULT_START = datetime(2025, 1, 1, tzinfo=UTC)
"""Where a ``shop`` history starts unless told (fixed: the same shop every time)."""


@dataclass(frozen=True)
class Shop:
    products: list[dict[str, Any]]
    events: list[dict[str, Any]]
    users: list[str]


def catalog(n_products: int, *, seed: int = 7, n_categories: int = 8) -> list[dict[str, Any]]:
    """Products as ``POST /v1/products`` items (product_id, name, category, price, ...)."""
    rng = np.random.default_rng(seed)
    cats = CATEGORIES[: max(1, min(n_categories, len(CATEGORIES)))]
    out = []
    for i in range(n_products):
        cat = cats[i % len(cats)]
        adj = _ADJECTIVES[int(rng.integers(len(_ADJECTIVES)))]
        colour = _COLOURS[int(rng.integers(len(_COLOURS)))]
        out.append(
            {
                "product_id": f"p{i:06d}",
                "name": f"{adj} {colour} {cat} item {i}",
                "category": cat,
                "price": round(float(rng.lognormal(3.0, 0.8)), 2),
                "in_stock": True,
                "active": True,
                "attributes": {"colour": colour, "brand": f"brand{int(rng.integers(20))}"},
                "description": f"A {adj} {colour} product for {cat} lovers.",
            }
        )
    return out


def shop(
    n_users: int = 200,
    n_products: int = 300,
    events_per_user: int = 25,
    *,
    seed: int = 7,
    start: datetime | None = None,
    days: float = 30.0,
    n_categories: int = 8,
    user_prefix: str = "u",
    end: datetime | None = None,
) -> Shop:
    """A catalog plus an event history (``POST /v1/events`` objects, sorted by timestamp).

    The history spans ``days`` from ``start`` (default 2025-01-01), or the ``days`` before
    ``end``. A shop sent to a running stack usually ends now (``end=datetime.now(UTC)``):
    events sent later without a timestamp (receive time) then extend the same history, and
    the trainer's event-time window, anchored at the newest event, holds all of it.
    ``user_prefix`` starts every user id: shops sent to one stack with different prefixes do
    not share users (their profiles and histories stay apart).
    """
    if start is not None and end is not None:
        raise ValueError("give start or end, not both")
    if start is None:
        start = DEFAULT_START if end is None else end - timedelta(days=days)
    rng = np.random.default_rng(seed)
    products = catalog(n_products, seed=seed, n_categories=n_categories)
    cats = sorted({p["category"] for p in products})
    by_cat: dict[str, np.ndarray] = {
        c: np.array([i for i, p in enumerate(products) if p["category"] == c]) for c in cats
    }
    popularity = 1.0 / np.arange(1, n_products + 1) ** 0.8
    popularity = popularity[rng.permutation(n_products)]
    dim = 8
    item_vec = rng.normal(size=(n_products, dim))
    users = [f"{user_prefix}{i:05d}" for i in range(n_users)]
    events: list[dict[str, Any]] = []
    span = days * 86400.0
    for u, user in enumerate(users):
        favourites = list(rng.choice(len(cats), size=min(2, len(cats)), replace=False))
        taste = rng.normal(size=dim)
        n = max(1, int(rng.poisson(events_per_user)))
        t0 = float(rng.uniform(0, span * 0.5))
        times = np.sort(t0 + rng.uniform(0, span - t0, size=n))
        for k in range(n):
            cat = cats[favourites[0] if rng.random() < 0.7 else favourites[-1]]
            if rng.random() < 0.1:
                cat = cats[int(rng.integers(len(cats)))]
            pool = by_cat[cat]
            affinity = item_vec[pool] @ taste
            w = popularity[pool] * np.exp(affinity - affinity.max())
            item = int(pool[rng.choice(len(pool), p=w / w.sum())])
            r = rng.random()
            event_type = (
                "purchase" if r < 0.08 else "add_to_cart" if r < 0.18 else
                "click" if r < 0.40 else "view"
            )  # fmt: skip
            ev: dict[str, Any] = {
                "event_id": f"e{seed}-{u}-{k}",
                "user_id": user,
                "event_type": event_type,
                "product_id": products[item]["product_id"],
                "timestamp": (start + timedelta(seconds=float(times[k]))).isoformat(),
            }
            if event_type == "purchase":
                ev["value"] = 1
                ev["price"] = products[item]["price"]
            events.append(ev)
    events.sort(key=lambda e: e["timestamp"])
    return Shop(products=products, events=events, users=users)


def batches(items: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@dataclass(frozen=True)
class Click:
    """One row of a session click log."""

    session_id: str
    user_id: str
    product_id: str
    ts: float
    """Unix seconds."""


def session_log(
    n_users: int = 2000,
    n_products: int = 2000,
    n_sessions: int = 20_000,
    *,
    seed: int = 7,
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC),
    days: float = 14.0,
    n_categories: int = 12,
) -> list[Click]:
    """A click log of shopping sessions (same products as ``catalog(n_products)``), ordered by
    time: each session is one user's visit to one of their favourite categories, 2 to ~15
    clicks 10-120 s apart; every next click is drawn from the category by popularity, the
    user's taste and its likeness to the previous click, so the latest item carries signal
    that a user's whole history does not."""
    rng = np.random.default_rng(seed)
    products = catalog(n_products, seed=seed, n_categories=n_categories)
    cats = sorted({p["category"] for p in products})
    pools = [np.array([i for i, p in enumerate(products) if p["category"] == c]) for c in cats]
    popularity = 1.0 / np.arange(1, n_products + 1) ** 0.8
    popularity = popularity[rng.permutation(n_products)]
    dim = 8
    item_vec = rng.normal(size=(n_products, dim))
    taste = rng.normal(size=(n_users, dim))
    favourites = rng.integers(0, len(cats), size=(n_users, 2))
    activity = rng.lognormal(0.0, 0.8, size=n_users)  # a few sessions a day at most
    activity /= activity.sum()
    users = rng.choice(n_users, size=n_sessions, p=activity)
    starts = np.sort(rng.uniform(0.0, days * 86400.0, size=n_sessions))
    base = start.timestamp()
    clicks: list[Click] = []
    for s in range(n_sessions):
        u = int(users[s])
        pool = pools[int(favourites[u, 0 if rng.random() < 0.7 else 1])]
        n = 2 + int(rng.geometric(0.2))
        intent = taste[u] + rng.normal(size=dim)
        t = base + float(starts[s])
        prev: int | None = None
        for _ in range(n):
            score = item_vec[pool] @ intent * 0.5
            if prev is not None:
                score = score + item_vec[pool] @ item_vec[prev] * 0.8
            w = popularity[pool] * np.exp(score - score.max())
            item = int(pool[rng.choice(pool.size, p=w / w.sum())])
            clicks.append(Click(f"s{seed}-{s:06d}", f"u{u:05d}", products[item]["product_id"], t))
            prev = item
            t += float(rng.uniform(10.0, 120.0))
    clicks.sort(key=lambda c: c.ts)
    return clicks
