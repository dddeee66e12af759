"""Approximate maximum-inner-product search over item factors (usearch HNSW).

Used above ``exact_max_items`` items. The graph stores the item factors quantised
(``ann.dtype``, f16 by default: half the memory of f32); every search takes a few times
more candidates than asked and re-ranks them exactly in float32 against the model's own
factors, so the returned scores are exact inner products.

At build time the index measures its recall@20 against exact search on sampled queries and
raises its search expansion until it reaches the target (or a maximum); the result is exported
as ``streamrec_recommender_ann_recall_at_20``. A built graph is saved under the cache directory
keyed by model version and a digest of the factors, and later processes (the other uvicorn
workers, restarts) memory-map it instead of building again; an exclusive file lock makes one
process build while the others wait.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from numpy.typing import NDArray
from pydantic import ConfigDict, Field

from streamrec_recommender.serving.ranking import Ranked
from streamrec_shared.settings import Group

if TYPE_CHECKING:
    from usearch.index import Index

logger = logging.getLogger(__name__)

RECALL_K = 20


class AnnParams(Group):
    """The index's knobs; also the recommender's ``ann`` settings group
    (``STREAMREC_RECOMMENDER__ANN__TARGET_RECALL=0.97`` and so on)."""

    model_config = ConfigDict(frozen=True)

    connectivity: int = Field(default=16, ge=4)
    expansion_add: int = Field(default=64, ge=8)
    expansion_search: int = Field(default=128, ge=8)
    max_expansion_search: int = Field(default=1024, ge=8)
    dtype: str = "f16"
    """usearch scalar type of the stored vectors (f32, f16; i8 clips unnormalised factors);
    candidates are re-ranked exactly in f32."""
    target_recall: float = Field(default=0.97, gt=0, le=1)
    """Build-time recall@20 the search expansion is raised to reach (if it can)."""
    recall_queries: int = Field(default=200, ge=10)
    threads: int = Field(default=2, ge=1)
    oversample: int = Field(default=3, ge=1)
    """Candidates taken per asked result before the exact re-rank (bounded by the expansion)."""


def factors_digest(item_factors: NDArray[np.float32]) -> str:
    """Short sha256 of a factor matrix (n, f) float32: names its cached graph."""
    h = hashlib.sha256()
    h.update(str(item_factors.shape).encode())
    h.update(np.ascontiguousarray(item_factors).data)
    return h.hexdigest()[:16]


def exact_top(
    item_factors: NDArray[np.float32], queries: NDArray[np.float32], k: int
) -> NDArray[np.int64]:
    """Exact top-k item indices (q, k) int64 for queries (q, f) float32, in row blocks."""
    out = np.empty((queries.shape[0], k), dtype=np.int64)
    for start in range(0, queries.shape[0], 32):
        block = queries[start : start + 32] @ item_factors.T
        part = np.argpartition(-block, k - 1, axis=1)[:, :k]
        out[start : start + 32] = part
    return out


class AnnIndex:
    """An HNSW graph over item factors (n, f) float32 with exact float32 re-ranking."""

    def __init__(
        self, index: Index, item_factors: NDArray[np.float32], params: AnnParams, recall: float
    ) -> None:
        self._index = index
        self.item_factors = item_factors
        self.params = params
        self.recall = recall

    @property
    def expansion_search(self) -> int:
        return int(self._index.expansion_search)

    @property
    def memory_bytes(self) -> int:
        return int(self._index.memory_usage)

    def search(self, query: NDArray[np.float32], c: int) -> Ranked:
        """About the best ``c`` items for query (f,) float32, exact scores, best first."""
        n = self.item_factors.shape[0]
        # Oversample only up to the tuned beam width: the graph search explores
        # max(expansion_search, want) candidates, so a larger want (3 x 100 for a serving
        # request) would multiply its cost far beyond what the recall tuning paid for.
        want = min(n, max(c + 16, min(c * self.params.oversample, self.expansion_search)))
        matches = self._index.search(query, want, threads=1)
        keys = np.asarray(matches.keys, dtype=np.int64)
        keys = keys[(keys >= 0) & (keys < n)]
        scores = self.item_factors[keys] @ query
        return Ranked.of(keys, scores).head(c)

    def measure_recall(self, queries: NDArray[np.float32], exact: NDArray[np.int64]) -> float:
        """Mean recall@k of ``search`` for queries (q, f) against exact ids (q, k) int64."""
        k = exact.shape[1]
        hits = 0
        for q, truth in zip(queries, exact, strict=True):
            got = self.search(q, k).indices
            hits += int(np.isin(got, truth).sum())
        return hits / float(exact.size)

    @classmethod
    def build(
        cls,
        item_factors: NDArray[np.float32],
        params: AnnParams,
        *,
        cache_dir: Path | None,
        version: int,
        sample_queries: NDArray[np.float32] | None = None,
        seed: int = 0,
    ) -> AnnIndex:
        """Build (or map a cached) graph, then tune expansion_search to the target recall.

        item_factors (n, f) float32 C-contiguous; sample_queries (q, f) float32 realistic user
        vectors for the recall measurement (default: random item factors plus noise).
        """
        from usearch.index import Index  # optional dependency: only above exact_max_items

        n, f = item_factors.shape
        started = time.perf_counter()
        index: Index | None = None
        path: Path | None = None
        lock_fd: int | None = None
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            key = f"v{version}-{factors_digest(item_factors)}-{params.dtype}-m{params.connectivity}"
            path = cache_dir / f"{key}.usearch"
            lock_fd = os.open(cache_dir / f"{key}.lock", os.O_CREAT | os.O_RDWR, 0o644)
            fcntl.flock(lock_fd, fcntl.LOCK_EX)  # one builder; the others wait, then map it
        try:
            if path is not None and path.exists():
                index = Index.restore(str(path), view=True)
                if index is None or len(index) != n or index.ndim != f:
                    index = None
                else:
                    logger.info("mapped cached ANN index %s (%d items)", path, n)
            if index is None:
                index = Index(
                    ndim=f,
                    metric="ip",
                    dtype=params.dtype,
                    connectivity=params.connectivity,
                    expansion_add=params.expansion_add,
                    expansion_search=params.expansion_search,
                )
                index.add(
                    np.arange(n, dtype=np.uint64),
                    item_factors,
                    threads=params.threads,
                    log=False,
                )
                if path is not None:
                    tmp = path.with_suffix(".partial")
                    index.save(str(tmp))
                    tmp.replace(path)
                logger.info(
                    "built ANN index over %d items in %.1fs", n, time.perf_counter() - started
                )
        finally:
            if lock_fd is not None:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)
                os.close(lock_fd)
        rng = np.random.default_rng(seed)
        if sample_queries is None or sample_queries.shape[0] == 0:
            picks = rng.integers(0, n, size=params.recall_queries)
            noise = rng.normal(scale=float(item_factors.std()), size=(picks.size, f))
            sample_queries = (item_factors[picks] + noise).astype(np.float32)
        queries = np.ascontiguousarray(sample_queries[: params.recall_queries], dtype=np.float32)
        k = min(RECALL_K, n)
        exact = exact_top(item_factors, queries, k)
        ann = cls(index, item_factors, params, recall=0.0)
        expansion = params.expansion_search
        while True:
            cast(Any, index).expansion_search = expansion  # a settable property (stub says not)
            ann.recall = ann.measure_recall(queries, exact)
            if ann.recall >= params.target_recall or expansion >= params.max_expansion_search:
                break
            expansion = min(expansion * 2, params.max_expansion_search)
        logger.info(
            "ANN index ready: %d items, recall@%d %.3f at expansion_search %d (%.1fs)",
            n,
            k,
            ann.recall,
            expansion,
            time.perf_counter() - started,
        )
        return ann
