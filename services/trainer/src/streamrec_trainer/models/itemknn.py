"""Item-item nearest neighbours on the interaction matrix (BM25 or cosine weighting).

The similarity of items i and j is the dot product of their (weighted) user columns; each item
keeps its ``k`` most similar items (``implicit``'s all-pairs kNN). A user's score for item j is
``sum_i w_ui * sim(i, j)`` over the user's items i.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import scipy.sparse as sp
from implicit.nearest_neighbours import ItemItemRecommender, bm25_weight
from numpy.typing import NDArray

from streamrec_shared.artifacts import ItemKnnArrays
from streamrec_trainer.models import registry
from streamrec_trainer.models.base import Scorer, as_csr32, single_threaded_blas

if TYPE_CHECKING:
    from streamrec_trainer.models.fit import FittedModels


@dataclass(frozen=True)
class ItemKnnParams:
    """method "bm25" or "cosine"; k neighbours kept per item; k1, b: BM25 parameters;
    binary: use 1.0 per interaction instead of the decayed weight (for similarity and scoring)."""

    method: Literal["bm25", "cosine"] = "bm25"
    k: int = 100
    k1: float = 1.2
    b: float = 0.75
    binary: bool = False
    num_threads: int = 2


@dataclass(frozen=True)
class ItemKnnModel:
    """similarity: csr_matrix (n_items, n_items) float32, row i holds item i's k neighbours
    (itself included, as implicit computes it)."""

    similarity: sp.csr_matrix
    method: str
    binary: bool

    @property
    def name(self) -> str:
        return f"itemknn_{self.method}"

    def score(self, users: NDArray[np.int64], user_items: sp.csr_matrix) -> NDArray[np.float32]:
        """``user_items @ similarity``: (m, n_items) float32."""
        del users
        rows = as_csr32(user_items)
        if self.binary:
            rows.data[:] = 1.0
        return np.asarray((rows @ self.similarity).toarray(), dtype=np.float32)

    def neighbours(self, n: int) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
        """Each item's n most similar other items, best first.

        Returns (neighbours ndarray (n_items, n) int32, -1 padded; scores (n_items, n) float32).
        """
        sim = self.similarity
        n_items = sim.shape[0]
        out_idx = np.full((n_items, n), -1, dtype=np.int32)
        out_val = np.zeros((n_items, n), dtype=np.float32)
        for i in range(n_items):
            lo, hi = sim.indptr[i], sim.indptr[i + 1]
            cols = sim.indices[lo:hi]
            vals = sim.data[lo:hi]
            keep = (cols != i) & (vals > 0)
            cols, vals = cols[keep], vals[keep]
            order = np.lexsort((cols, -vals))[:n]
            out_idx[i, : order.size] = cols[order]
            out_val[i, : order.size] = vals[order]
        return out_idx, out_val


def weight_matrix(weights: sp.csr_matrix, params: ItemKnnParams) -> sp.csr_matrix:
    """The user-item matrix the similarity is computed on: csr (n_users, n_items) float32."""
    x = as_csr32(weights)
    if params.binary:
        x.data[:] = 1.0
    if params.method == "bm25":
        # implicit's BM25Recommender: items are the documents, users the terms.
        x = as_csr32(bm25_weight(x.T, K1=params.k1, B=params.b).T)
    elif params.method == "cosine":
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
        norms[norms == 0] = 1.0
        x = as_csr32(x @ sp.diags((1.0 / norms).astype(np.float32)))
    else:
        raise ValueError(f"unknown item-kNN method {params.method!r}")
    return x


def fit_itemknn(weights: sp.csr_matrix, params: ItemKnnParams) -> ItemKnnModel:
    """Fit on net decayed weights, csr_matrix (n_users, n_items) float32."""
    # implicit's all-pairs kNN takes float64 values (as its own BM25/cosine weightings give).
    x = sp.csr_matrix(weight_matrix(weights, params), dtype=np.float64)
    with single_threaded_blas():
        knn = ItemItemRecommender(K=params.k, num_threads=params.num_threads)
        knn.fit(x, show_progress=False)
    sim = as_csr32(knn.similarity)
    sim.eliminate_zeros()
    return ItemKnnModel(similarity=sim, method=params.method, binary=params.binary)


# --- registration (streamrec_trainer.models.registry) ------------------------------------------
def _fit(fitting: registry.Fitting, params: ItemKnnParams) -> ItemKnnModel:
    return fit_itemknn(fitting.x_for("itemknn"), params)


def _bundle(model: ItemKnnModel, fitted: FittedModels) -> ItemKnnArrays:
    """The similar-products lists (``fit.similar_lists``: neighbours, then ALS cosine)."""
    del model
    return ItemKnnArrays(neighbours=fitted.similar_items, neighbour_scores=fitted.similar_scores)


def _offline(
    method: Literal["bm25", "cosine"],
) -> Callable[[registry.OfflineContext, registry.Params], Scorer]:
    def fit(ctx: registry.OfflineContext, p: registry.Params) -> Scorer:
        x = ctx.train_matrix(p)
        params = ItemKnnParams(
            method=method, k=int(p["k"]), binary=bool(p["binary"]), num_threads=ctx.threads
        )
        return fit_itemknn(x, params)

    return fit


registry.register(
    registry.TrainerAlgorithm(
        "itemknn",
        ItemKnnParams,
        _fit,
        bundle=_bundle,
        offline={
            "itemknn_bm25": registry.OfflineAdapter(
                registry.grid(half_life_days=[None, 90.0], k=[50, 100, 200], binary=[True, False]),
                _offline("bm25"),
                order=20,
            ),
            "itemknn_cosine": registry.OfflineAdapter(
                registry.grid(half_life_days=[None, 90.0], k=[50, 200], binary=[True, False]),
                _offline("cosine"),
                order=21,
            ),
        },
    )
)
