"""EASE (Steck 2019): a closed-form item-item linear model, ``B = I - P / diag(P)``,
``P = (X^T X + lambda I)^-1``, zero diagonal.

B is a dense (n_items, n_items) matrix: the fit refuses catalogues larger than ``max_items``
(the trainer then skips EASE and the recommender reports it unavailable). What ships is B
sparsified: each item's ``neighbours`` largest weights by magnitude (``EaseModel.neighbours``),
in ``ease.npz`` with the layout of ``itemknn.npz`` (neighbours / neighbour_scores), so serving
scores a user's items exactly as it scores item-kNN neighbours
(``streamrec_recommender.serving.ranking.neighbour_candidates``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from streamrec_trainer.models import registry
from streamrec_trainer.models.base import as_csr32

if TYPE_CHECKING:
    from streamrec_trainer.models.fit import FittedModels

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EaseParams:
    """l2 (lambda); binary: fit (and score) on 1.0 per interaction instead of decayed weights;
    max_items: the largest catalogue fitted (the fit holds about two dense float64
    n_items^2 matrices: 1.6 GB at 10,000 items); neighbours: weights kept per item in the
    bundle (the largest by magnitude; on the Online Retail protocol offline, NDCG@20 with 50 /
    100 / 200 / all: 0.1136 / 0.1127 / 0.1124 / 0.1132, positive weights only at 200: 0.1081;
    each one costs serving time)."""

    l2: float = 300.0
    binary: bool = True
    max_items: int = 10_000
    neighbours: int = 100


@dataclass(frozen=True)
class EaseModel:
    """weights B: ndarray (n_items, n_items) float32 with zero diagonal (row i: what an
    interaction with item i adds to every item's score)."""

    weights: NDArray[np.float32]
    binary: bool

    @property
    def name(self) -> str:
        return "ease"

    def score(self, users: NDArray[np.int64], user_items: sp.csr_matrix) -> NDArray[np.float32]:
        """``user_items @ B``: (m, n_items) float32."""
        del users
        x = as_csr32(user_items)
        if self.binary:
            x.data[:] = 1.0
        return np.asarray(x @ self.weights, dtype=np.float32)

    def neighbours(self, n: int) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
        """B sparsified: each item's ``n`` largest weights by magnitude (negative ones too:
        they demote items that rarely go with it), largest weight first.

        Returns (neighbours ndarray (n_items, min(n, n_items - 1)) int32, -1 where a weight
        is 0; weights of the same shape float32).
        """
        b = self.weights
        n_items = b.shape[0]
        keep = min(n, max(n_items - 1, 0))
        out_idx = np.full((n_items, keep), -1, dtype=np.int32)
        out_val = np.zeros((n_items, keep), dtype=np.float32)
        if keep == 0:
            return out_idx, out_val
        magnitude = np.abs(b)
        np.fill_diagonal(magnitude, -1.0)  # never an item's own neighbour
        part = np.argpartition(-magnitude, keep - 1, axis=1)[:, :keep]
        vals = np.take_along_axis(b, part, axis=1)
        order = np.argsort(-vals, axis=1, kind="stable")
        idx = np.take_along_axis(part, order, axis=1)
        vals = np.take_along_axis(vals, order, axis=1)
        nonzero = vals != 0
        out_idx[:] = np.where(nonzero, idx, -1)
        out_val[:] = np.where(nonzero, vals, 0.0)
        return out_idx, out_val


def fit_ease(weights: sp.csr_matrix, params: EaseParams) -> EaseModel:
    """Fit on csr_matrix (n_users, n_items) float32 net decayed weights."""
    n_items = weights.shape[1]
    if n_items > params.max_items:
        raise ValueError(f"EASE needs a dense {n_items}^2 matrix; max_items={params.max_items}")
    x = as_csr32(weights).astype(np.float64)
    if params.binary:
        x.data[:] = 1.0
    gram = np.asarray((x.T @ x).toarray(), dtype=np.float64)
    gram[np.diag_indices(n_items)] += params.l2
    p = np.linalg.inv(gram)
    del gram
    p /= -np.diag(p)[None, :]
    p[np.diag_indices(n_items)] = 0.0
    return EaseModel(weights=p.astype(np.float32), binary=params.binary)


# --- registration (streamrec_trainer.models.registry) ------------------------------------------
def _fit(fitting: registry.Fitting, params: EaseParams) -> EaseModel | None:
    n_items = fitting.x.shape[1]
    if n_items > params.max_items:
        logger.info("EASE skipped: %d items > max_items %d", n_items, params.max_items)
        return None
    return fit_ease(fitting.x_for("ease"), params)


def _bundle(model: EaseModel, fitted: FittedModels) -> dict[str, NDArray[Any]]:
    """``ease.npz``: neighbours (n_items, N) int32, neighbour_scores (n_items, N) float32 in the
    ALS item space (the training matrix's columns), binary () bool."""
    items, weights = model.neighbours(fitted.params.params_for("ease").neighbours)
    return {
        "neighbours": items,
        "neighbour_scores": weights,
        "binary": np.asarray(model.binary),
    }


def _offline(ctx: registry.OfflineContext, p: registry.Params) -> EaseModel:
    x = ctx.train_matrix(p)
    return fit_ease(x, EaseParams(l2=float(p["l2"]), binary=bool(p["binary"]), max_items=20_000))


registry.register(
    registry.TrainerAlgorithm(
        "ease",
        EaseParams,
        _fit,
        bundle=_bundle,
        offline={
            "ease": registry.OfflineAdapter(
                registry.grid(
                    half_life_days=[None], l2=[100.0, 300.0, 1000.0, 3000.0], binary=[True]
                )
                + registry.grid(half_life_days=[90.0], l2=[300.0, 1000.0], binary=[False]),
                _offline,
                order=40,
            )
        },
    )
)
