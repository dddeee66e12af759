"""The active model held in memory: loaded off the event loop, swapped as one reference.

A ``ServingModel`` is built once per model version from an ``artifacts.ModelBundle`` and never
changes afterwards; ``ModelHandle.current`` is replaced atomically (one attribute assignment)
when ``streamrec_shared.model_watch.ModelWatcher`` announces a new active version (models.v1,
registry polling as fallback). Requests take one reference at their start and use it to the
end, so a swap never mixes two versions inside one response. The serving item space is
described in ``serving.model``.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import importlib.util
import logging
import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from streamrec_recommender.runtime.index import AnnIndex
from streamrec_recommender.serving.model import SeenRule, ServingModel
from streamrec_recommender.serving.newitems import ContentMap
from streamrec_recommender.serving.quantised import QuantisedScan
from streamrec_recommender.serving.ranking import ExactScorer, Ranked
from streamrec_recommender.settings import ServingSettings
from streamrec_shared import factors, metrics
from streamrec_shared.artifact_store import open_version
from streamrec_shared.artifacts import ModelBundle
from streamrec_shared.events import ModelAnnouncement

logger = logging.getLogger(__name__)


def ann_available() -> bool:
    """Whether the approximate index's library (usearch) can be imported."""
    return importlib.util.find_spec("usearch") is not None


def prepare(bundle: ModelBundle, settings: ServingSettings) -> ServingModel:
    """Build the serving view of a bundle (CPU heavy: run it in a thread)."""
    started = time.perf_counter()
    als = bundle.als
    trained_ids = als.item_ids
    n_trained = int(trained_ids.shape[0])
    index_of: dict[str, int] = {p: i for i, p in enumerate(trained_ids.tolist())}
    item_factors = als.item_factors
    content_rows: NDArray[np.int64] | None = None
    content_factors: NDArray[np.float32] | None = None
    content_index: NDArray[np.int64] | None = None
    item_ids = trained_ids
    if bundle.content is not None:
        content = bundle.content
        content_ids = content.item_ids.tolist()
        new_rows = [j for j, p in enumerate(content_ids) if p not in index_of]
        if new_rows:
            new = np.asarray(new_rows, dtype=np.int64)
            item_ids = np.concatenate([trained_ids, content.item_ids[new]])
            item_factors = np.concatenate([item_factors, content.item_factors[new]])
            for offset, j in enumerate(new_rows):
                index_of[content_ids[j]] = n_trained + offset
        norms = np.linalg.norm(content.item_factors, axis=1, keepdims=True)
        content_factors = (content.item_factors / np.maximum(norms, 1e-12)).astype(np.float32)
        content_rows = np.full(item_ids.shape[0], -1, dtype=np.int64)
        content_index = np.empty(len(content_ids), dtype=np.int64)
        for j, p in enumerate(content_ids):
            content_rows[index_of[p]] = j
            content_index[j] = index_of[p]
    item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
    n = int(item_ids.shape[0])

    popular = Ranked.empty()
    by_category: dict[str, Ranked] = {}
    if bundle.popular is not None:
        pop = bundle.popular
        top = pop.top_items.astype(np.int64)
        top = top[top >= 0]
        popular = Ranked.of(top, pop.item_scores[top])
        for c, cat in enumerate(pop.categories.tolist()):
            items = pop.category_items[c].astype(np.int64)
            ok = items >= 0
            by_category[cat] = Ranked.of(items[ok], pop.category_scores[c][ok])

    ann: AnnIndex | None = None
    if n > settings.exact_max_items and not ann_available():
        logger.error(
            "%d items exceed exact_max_items=%d but usearch is not installed: scoring exactly",
            n,
            settings.exact_max_items,
        )
    elif n > settings.exact_max_items:
        params = settings.ann
        rng = np.random.default_rng(bundle.version)
        sample: NDArray[np.float32] | None = None
        if bundle.n_users:
            rows = rng.integers(0, bundle.n_users, size=params.recall_queries)
            sample = als.user_factors[rows]
        cache = Path(settings.index_cache_dir) if settings.index_cache_dir else None
        ann = AnnIndex.build(
            item_factors, params, cache_dir=cache, version=bundle.version, sample_queries=sample
        )
        metrics.RECOMMENDER_ANN_RECALL.set(ann.recall)

    content_scan: QuantisedScan | None = None
    if (
        ann is None
        and content_factors is not None
        and content_factors.shape[0] >= settings.content_scan_min_items
    ):
        content_scan = QuantisedScan.build(content_factors)

    itemknn = bundle.itemknn
    model = ServingModel(
        version=bundle.version,
        created_at=bundle.created_at,
        item_ids=item_ids,
        index_of=index_of,
        item_factors=item_factors,
        n_trained=n_trained,
        user_index={u: i for i, u in enumerate(als.user_ids.tolist())},
        user_factors=als.user_factors,
        regularization=als.regularization,
        alpha=als.alpha,
        yty=factors.gram(als.item_factors),
        neighbours=itemknn.neighbours if itemknn is not None else None,
        neighbour_sims=itemknn.neighbour_scores if itemknn is not None else None,
        content_rows=content_rows,
        content_factors=content_factors,
        content_index=content_index,
        popular=popular,
        popular_by_category=by_category,
        ann=ann,
        exact=ExactScorer.build(item_factors) if ann is None else None,
        content_scan=content_scan,
        algorithms=bundle.algorithms,
        arrays=neighbour_arrays(bundle.extra_files, n_trained),
        offline_metrics=dict(bundle.metrics),
        content_map=(
            ContentMap.from_arrays(
                bundle.content.vocabulary,
                bundle.content.text_idf,
                bundle.content.projection,
                bundle.content.projection_bias,
            )
            if bundle.content is not None
            else None
        ),
        seen=SeenRule.from_extra(bundle.extra.get("seen_rule")),
        hybrid_weights=hybrid_weights(bundle.extra.get("hybrid_weights")),
        load_seconds=time.perf_counter() - started,
    )
    logger.info(
        "prepared model version %d: %d items (%d trained), %d users, %d factors, ann=%s",
        model.version,
        n,
        n_trained,
        len(model.user_index),
        model.dim,
        ann is not None,
    )
    return model


def hybrid_weights(raw: Any) -> dict[str, float] | None:
    """``extra["hybrid_weights"]`` of a bundle as {algorithm: weight >= 0}; None when absent or
    unreadable (then ``hybrid`` uses the registry's weights)."""
    if not isinstance(raw, Mapping):
        return None
    out = {
        str(name): float(w)
        for name, w in raw.items()
        if isinstance(w, int | float) and math.isfinite(w) and w >= 0
    }
    return out if len(out) == len(raw) and any(w > 0 for w in out.values()) else None


def neighbour_arrays(
    parts: Mapping[str, Mapping[str, NDArray[Any]]], n_trained: int
) -> Mapping[str, Mapping[str, NDArray[Any]]]:
    """The bundle's further arrays, without a neighbour-list part (``neighbours`` /
    ``neighbour_scores``, e.g. ``ease.npz``) whose shape or indices do not fit the model's
    ``n_trained`` items: that algorithm is then unavailable instead of failing requests."""
    out = {}
    for name, arrays in parts.items():
        nb, sc = arrays.get("neighbours"), arrays.get("neighbour_scores")
        if nb is not None and sc is not None:
            shaped = nb.ndim == 2 and nb.shape[0] == n_trained and sc.shape == nb.shape
            inside = nb.size == 0 or (nb.min() >= -1 and nb.max() < n_trained)
            fits = shaped and nb.dtype.kind == "i" and inside
            if not fits:
                logger.error("%s.npz does not fit the model's %d items: ignored", name, n_trained)
                continue
        out[name] = arrays
    return out


def load(directory: Path, settings: ServingSettings) -> ServingModel:
    """Read, verify and prepare a version directory (blocking)."""
    return prepare(ModelBundle.load(directory), settings)


def in_canary(user_id: str, version: int, share: float) -> bool:
    """Whether ``user_id`` is in the canary share of version ``version``'s rollout: a hash of
    version and user id, so a user stays on one side for the whole rollout (and every
    recommender replica agrees) while each rollout draws its own users."""
    digest = hashlib.blake2b(f"{version}:{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64 < share


class ModelHandle:
    """Holds the active ``ServingModel`` and, during a gradual rollout, the canary version
    (``set_canary``); ``on_model`` is the ModelWatcher callback, ``for_user`` picks a user's."""

    def __init__(self, settings: ServingSettings) -> None:
        self.settings = settings
        self.current: ServingModel | None = None
        self.canary: ServingModel | None = None
        self.canary_share = 0.0
        self._lock = asyncio.Lock()

    async def on_model(self, ann: ModelAnnouncement) -> None:
        """Load the announced version off the event loop, then swap the reference (a promoted
        canary is already loaded: it is swapped in at once)."""
        async with self._lock:
            cur = self.current
            if cur is not None and cur.version == ann.version:
                return
            canary = self.canary
            if canary is not None and canary.version == ann.version:
                self.swap(canary)
                self.canary, self.canary_share = None, 0.0
                return
            path = await asyncio.to_thread(open_version, ann.artifact_uri)
            model = await asyncio.to_thread(load, path, self.settings)
            self.swap(model)

    async def set_canary(
        self, version: int | None, artifact_uri: str = "", share: float = 0.0
    ) -> None:
        """Hold version ``version`` for ``share`` of users next to the active one (None: no
        rollout, the canary is dropped)."""
        if version is None or (self.current is not None and self.current.version == version):
            if self.canary is not None:
                logger.info("canary version %d dropped", self.canary.version)
            self.canary, self.canary_share = None, 0.0
            return
        if self.canary is not None and self.canary.version == version:
            self.canary_share = share
            return
        async with self._lock:
            path = await asyncio.to_thread(open_version, artifact_uri)
            model = await asyncio.to_thread(load, path, self.settings)
            self.canary, self.canary_share = model, share
        logger.info("canary version %d for %.0f%% of users", version, share * 100)

    def for_user(self, user_id: str) -> ServingModel | None:
        """The model that answers ``user_id``: the canary for its share of users, else the
        active one."""
        canary, current = self.canary, self.current
        if (
            canary is not None
            and current is not None
            and canary.version != current.version
            and in_canary(user_id, canary.version, self.canary_share)
        ):
            return canary
        return current

    def swap(self, model: ServingModel) -> None:
        old = self.current
        self.current = model
        # The model's id maps hold millions of entries that live until the next swap; every
        # full collection would traverse them (a 100 ms pause with 1M users, seen as p99).
        # Frozen objects are skipped by the collector and still freed by reference counting
        # when the model is replaced.
        gc.freeze()
        metrics.RECOMMENDER_MODEL_VERSION.set(model.version)
        self.update_age()
        logger.info(
            "serving model version %d (was %s)", model.version, old.version if old else None
        )

    def update_age(self) -> None:
        model = self.current
        if model is not None:
            age = (datetime.now(UTC) - model.created_at).total_seconds()
            metrics.RECOMMENDER_MODEL_AGE.set(max(0.0, age))
