"""A synthetic model bundle (written with ``streamrec_shared.artifacts``) for tests and benchmarks.

Products ``p000000``, ``p000001``, ... with category ``CATEGORIES[i % n_categories]`` (the same
ids and categories as ``streamrec_dev.synthetic.catalog``); users ``u0000000``, ...
Item factors cluster by category, users mix one or two category centroids, so the factors have
the structure of trained ALS factors (a random gaussian matrix would be unrealistically hard
for the approximate index). Item-kNN neighbours are items of the same category, popularity is
Zipf-like, and ``n_content_only`` extra products exist only in the content model (new products
without interactions).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from streamrec_dev.synthetic import CATEGORIES
from streamrec_shared import artifacts


def product_id(i: int) -> str:
    return f"p{i:06d}"


def user_id(i: int) -> str:
    return f"u{i:07d}"


def _ids(start: int, n: int, width: int, prefix: str) -> NDArray[np.str_]:
    """Ids ``<prefix><zero-padded number>``: ndarray (n,) unicode."""
    nums = np.char.zfill(np.arange(start, start + n).astype(np.str_), width)
    return np.char.add(prefix, nums).astype(f"<U{width + 1}")


def make_bundle(
    *,
    version: int = 1,
    n_items: int = 300,
    n_users: int = 200,
    factors: int = 16,
    n_categories: int = 8,
    n_neighbours: int = 20,
    n_content_only: int = 0,
    seed: int = 0,
    popular_top: int = 500,
) -> artifacts.ModelBundle:
    """A complete, consistent bundle (als, itemknn, content, popular)."""
    rng = np.random.default_rng(seed)
    cats = CATEGORIES[: max(1, min(n_categories, len(CATEGORIES)))]
    n_cats = len(cats)
    centroids = rng.normal(size=(n_cats, factors)).astype(np.float32)
    item_cat = np.arange(n_items) % n_cats
    scale = np.float32(1.0 / np.sqrt(factors))
    y = centroids[item_cat] * 0.6 + rng.normal(size=(n_items, factors)).astype(np.float32) * 0.8
    y *= (0.2 + rng.gamma(2.0, 0.5, size=(n_items, 1))).astype(np.float32)
    y *= scale
    fav = rng.integers(0, n_cats, size=n_users)
    x = centroids[fav] + rng.normal(size=(n_users, factors)).astype(np.float32) * 0.7
    x *= scale

    item_ids = _ids(0, n_items, 6, "p")
    user_ids = _ids(0, n_users, 7, "u")

    # item-kNN: neighbours from the same category (a random sample), scores decreasing
    n_nb = min(n_neighbours, max(1, n_items // n_cats - 1))
    offsets = rng.integers(1, max(2, n_items // n_cats), size=(n_items, n_nb)) * n_cats
    neighbours = ((np.arange(n_items)[:, None] + offsets) % n_items).astype(np.int32)
    neighbours = np.where(neighbours == np.arange(n_items)[:, None], -1, neighbours)
    sims = np.sort(rng.uniform(0.05, 1.0, size=(n_items, n_nb)).astype(np.float32), axis=1)[:, ::-1]
    sims = np.where(neighbours >= 0, sims, 0.0).astype(np.float32)

    # content: one-hot category features; projection maps a category to its centroid
    n_content = n_items + n_content_only
    content_cat = np.arange(n_content) % n_cats
    content_ids = _ids(0, n_content, 6, "p")
    projection = (centroids * 0.6 * scale).astype(np.float32)
    content_factors = projection[content_cat].copy()
    content_factors[:n_items] = y * 0.5 + content_factors[:n_items] * 0.5

    # popularity: Zipf over a random permutation
    pop = (1.0 / np.arange(1, n_items + 1) ** 0.8).astype(np.float32)[rng.permutation(n_items)]
    m = min(popular_top, n_items)
    top = np.argsort(-pop, kind="stable")[:m].astype(np.int32)
    cat_items = np.full((n_cats, m), -1, dtype=np.int32)
    cat_scores = np.zeros((n_cats, m), dtype=np.float32)
    for c in range(n_cats):
        members = np.flatnonzero(item_cat == c)
        best = members[np.argsort(-pop[members], kind="stable")][:m]
        cat_items[c, : best.size] = best
        cat_scores[c, : best.size] = pop[best]

    return artifacts.ModelBundle(
        version=version,
        created_at=datetime.now(UTC),
        data_window=artifacts.DataWindow.from_timestamps(1_735_689_600.0, 1_738_281_600.0),
        als=artifacts.AlsArrays(
            item_ids=item_ids,
            user_ids=user_ids,
            item_factors=y,
            user_factors=x,
            regularization=0.05,
            alpha=2.0,
        ),
        itemknn=artifacts.ItemKnnArrays(neighbours=neighbours, neighbour_scores=sims),
        content=artifacts.ContentArrays(
            item_ids=content_ids,
            vector_data=np.ones(n_content, dtype=np.float32),
            vector_indices=content_cat.astype(np.int32),
            vector_indptr=np.arange(n_content + 1, dtype=np.int64),
            n_features=n_cats,
            projection=projection,
            projection_bias=np.zeros(factors, dtype=np.float32),
            item_factors=content_factors,
            text_idf=np.ones(1, dtype=np.float32),
            vocabulary={"categories": list(cats), "synthetic": True},
        ),
        popular=artifacts.PopularArrays(
            item_scores=pop,
            top_items=top,
            categories=np.asarray(cats, dtype=np.str_),
            category_items=cat_items,
            category_scores=cat_scores,
        ),
        params={"synthetic": True, "seed": seed},
    )


def write_bundle(root: Path, **kwargs: int) -> Path:
    """Save ``make_bundle(**kwargs)`` as ``root/v<version>``; returns the directory."""
    bundle = make_bundle(**kwargs)
    target = root / f"v{bundle.version}"
    bundle.save(target)
    return target


async def activate(
    directory: Path,
    version: int,
    *,
    postgres_dsn: str,
    kafka_bootstrap: str,
) -> None:
    """Register a saved bundle as the active version and announce it on models.v1.

    For tests and benchmarks that do not want to train: the row in ``model_versions`` is what
    registry polling finds, the announcement is what makes the switch immediate.
    """
    import asyncpg

    from streamrec_shared import kafka, topics
    from streamrec_shared.events import ModelAnnouncement, encode
    from streamrec_shared.settings import KafkaSettings

    uri = directory.as_uri()  # directory must be absolute
    now = datetime.now(UTC)
    conn = await asyncpg.connect(postgres_dsn)
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", 74_651_202)
            await conn.execute("UPDATE model_versions SET is_active = false WHERE is_active")
            await conn.execute(
                """INSERT INTO model_versions (version, status, is_active, params, artifact_uri,
                       activated_at, notes)
                   VALUES ($1, 'published', true, '{"synthetic": true}'::jsonb, $2, $3,
                       'synthetic bundle (tests/benchmarks)')
                   ON CONFLICT (version) DO UPDATE SET is_active = true, status = 'published',
                       artifact_uri = EXCLUDED.artifact_uri,
                       activated_at = EXCLUDED.activated_at""",
                version,
                uri,
                now,
            )
    finally:
        await conn.close()
    producer = kafka.producer(
        KafkaSettings(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
    )
    await producer.start()
    try:
        ann = ModelAnnouncement(version=version, artifact_uri=uri, activated_at=now)
        await producer.send_and_wait(topics.MODELS, encode(ann))
    finally:
        await producer.stop()


async def next_version(postgres_dsn: str) -> int:
    """One above the highest registered version (>= 1)."""
    import asyncpg

    conn = await asyncpg.connect(postgres_dsn)
    try:
        top = await conn.fetchval("SELECT coalesce(max(version), 0) FROM model_versions")
    finally:
        await conn.close()
    return int(top) + 1
