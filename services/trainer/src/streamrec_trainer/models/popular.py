"""Decayed popularity, global and per category.

An item's score is ``sum_u min(w_ui, cap)`` over the users' net decayed weights: with
``cap = PURCHASE_WEIGHT`` each user counts at most once and an old or weak interaction counts
partially (a purchase one half-life old counts 1/2, a fresh view 1/5), a decayed count of distinct
users. ``cap=None`` sums the raw weights (heavy repeat buyers count more).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray

from streamrec_shared.artifacts import PopularArrays
from streamrec_shared.factors import top_k
from streamrec_shared.weights import PURCHASE_WEIGHT
from streamrec_trainer.models import registry
from streamrec_trainer.models.base import as_csr32

if TYPE_CHECKING:
    from streamrec_trainer.models.fit import FittedModels


@dataclass(frozen=True)
class PopularParams:
    """cap per user and item (None = no cap); top_n: length of the stored lists."""

    cap: float | None = PURCHASE_WEIGHT
    top_n: int = 100


@dataclass(frozen=True)
class PopularModel:
    """item_scores (n_items,) float32; categories (n_categories,) U; per category the top_n
    item indices (n_categories, top_n) int32 (-1 padded) and their scores float32."""

    item_scores: NDArray[np.float32]
    categories: NDArray[np.str_]
    category_items: NDArray[np.int32]
    category_scores: NDArray[np.float32]

    @property
    def name(self) -> str:
        return "popular"

    def score(self, users: NDArray[np.int64], user_items: sp.csr_matrix) -> NDArray[np.float32]:
        """The global scores repeated for every user: (m, n_items) float32."""
        del user_items
        return np.broadcast_to(self.item_scores, (users.shape[0], self.item_scores.size)).copy()

    def top_items(self, n: int) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """Global top-n (indices int64, scores float32), best first."""
        return top_k(self.item_scores, n)


def fit_popular(
    weights: sp.csr_matrix,
    params: PopularParams,
    item_categories: ArrayLike | None = None,
) -> PopularModel:
    """weights: csr_matrix (n_users, n_items) float32 net decayed weights;
    item_categories: (n_items,) str per item ("" = none), aligned with the columns."""
    x = as_csr32(weights)
    if params.cap is not None:
        x.data = np.minimum(x.data, np.float32(params.cap))
    scores = np.asarray(x.sum(axis=0), dtype=np.float32).ravel()
    cats = (
        np.full(scores.size, "", dtype=np.str_)
        if item_categories is None
        else np.asarray(item_categories, dtype=np.str_)
    )
    names = np.asarray(sorted(c for c in set(cats.tolist()) if c), dtype=np.str_)
    cat_items = np.full((names.size, params.top_n), -1, dtype=np.int32)
    cat_scores = np.zeros((names.size, params.top_n), dtype=np.float32)
    for row, name in enumerate(names.tolist()):
        members = np.flatnonzero(cats == name)
        masked = np.full(scores.size, -np.inf, dtype=np.float32)
        masked[members] = scores[members]
        masked[masked <= 0] = -np.inf
        idx, val = top_k(masked, params.top_n)
        cat_items[row, : idx.size] = idx
        cat_scores[row, : idx.size] = val
    return PopularModel(
        item_scores=scores,
        categories=names,
        category_items=cat_items,
        category_scores=cat_scores,
    )


# --- registration (streamrec_trainer.models.registry) ------------------------------------------
def _fit(fitting: registry.Fitting, params: PopularParams) -> PopularModel:
    categories = fitting.dataset.catalog.reindex(fitting.matrix.item_ids).categories
    return fit_popular(fitting.x_for("popular"), params, categories)


def _bundle(model: PopularModel, fitted: FittedModels) -> PopularArrays:
    top, _ = model.top_items(fitted.params.popular.top_n)
    return PopularArrays(
        item_scores=model.item_scores,
        top_items=top.astype(np.int32),
        categories=model.categories,
        category_items=model.category_items,
        category_scores=model.category_scores,
    )


def _offline(ctx: registry.OfflineContext, p: registry.Params) -> PopularModel:
    x = ctx.train_matrix(p)
    return fit_popular(x, PopularParams(cap=p["cap"]))


registry.register(
    registry.TrainerAlgorithm(
        "popular",
        PopularParams,
        _fit,
        bundle=_bundle,
        offline={
            # undecayed distinct buyers, no tuning: the reference's popularity
            "popular_baseline": registry.OfflineAdapter(
                [{"half_life_days": None, "cap": 5.0}], _offline, order=10
            ),
            "popular": registry.OfflineAdapter(
                registry.grid(half_life_days=[None, 30.0, 90.0], cap=[5.0, None]),
                _offline,
                order=11,
            ),
        },
    )
)
