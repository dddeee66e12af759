"""EASE (Steck 2019): a closed-form item-item linear model, ``B = I - P / diag(P)``,
``P = (X^T X + lambda I)^-1``, zero diagonal.

Offline only for now: B is a dense (n_items, n_items) matrix, so the fit refuses catalogues
larger than ``max_items`` and the bundle does not ship it (its top-N can feed ``topn.npz``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from streamrec_trainer.models import registry
from streamrec_trainer.models.base import as_csr32


@dataclass(frozen=True)
class EaseParams:
    """l2 (lambda); binary: fit on 1.0 per interaction instead of decayed weights."""

    l2: float = 300.0
    binary: bool = True
    max_items: int = 20_000


@dataclass(frozen=True)
class EaseModel:
    """weights B: ndarray (n_items, n_items) float32 with zero diagonal."""

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
    b = -p / np.diag(p)[None, :]
    b[np.diag_indices(n_items)] = 0.0
    return EaseModel(weights=b.astype(np.float32), binary=params.binary)


# --- registration (streamrec_trainer.models.registry) ------------------------------------------
def _fit(fitting: registry.Fitting, params: EaseParams) -> EaseModel:
    return fit_ease(fitting.x, params)


def _offline(ctx: registry.OfflineContext, p: registry.Params) -> EaseModel:
    x = ctx.train_matrix(p)
    return fit_ease(x, EaseParams(l2=float(p["l2"]), binary=bool(p["binary"])))


registry.register(
    registry.TrainerAlgorithm(
        "ease",
        EaseParams,
        _fit,  # offline-only: nothing shipped (a dense n_items^2 matrix)
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
