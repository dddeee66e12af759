"""Bulk top-N: score users in batches, drop already-seen items, keep the N best."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from streamrec_trainer.models.base import Scorer, as_csr32


def top_n_from_scores(
    scores: NDArray[np.float32], n: int, exclude: sp.csr_matrix | None = None
) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """Row-wise top-n of a score matrix.

    scores: ndarray (m, n_items) float32 (modified in place when ``exclude`` is given);
    exclude: csr_matrix (m, n_items), stored cells are never returned. Items scored -inf or NaN
    are never returned either. Returns (items (m, n) int32 best first, -1 padded; scores (m, n)
    float32, -inf where padded). Ties are broken by ascending item index.
    """
    m, n_items = scores.shape
    if exclude is not None and exclude.nnz:
        rows, cols = exclude.nonzero()
        scores[rows, cols] = -np.inf
    np.nan_to_num(
        scores, copy=False, nan=-np.inf, posinf=float(np.finfo(np.float32).max), neginf=-np.inf
    )
    n_eff = min(n, n_items)
    if n_eff <= 0:
        return np.full((m, n), -1, dtype=np.int32), np.full((m, n), -np.inf, dtype=np.float32)
    if n_eff < n_items:
        cand = np.sort(np.argpartition(-scores, n_eff - 1, axis=1)[:, :n_eff], axis=1)
    else:
        cand = np.broadcast_to(np.arange(n_items), (m, n_items))
    vals = np.take_along_axis(scores, cand, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    items = np.take_along_axis(cand, order, axis=1).astype(np.int32)
    vals = np.take_along_axis(vals, order, axis=1).astype(np.float32)
    out_items = np.full((m, n), -1, dtype=np.int32)
    out_vals = np.full((m, n), -np.inf, dtype=np.float32)
    valid = np.isfinite(vals)
    out_items[:, :n_eff] = np.where(valid, items, -1)
    out_vals[:, :n_eff] = np.where(valid, vals, -np.inf)
    return out_items, out_vals


def top_n(
    scorer: Scorer,
    users: NDArray[np.int64],
    user_items: sp.csr_matrix,
    n: int,
    *,
    exclude_seen: bool = True,
    batch_size: int = 1024,
) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """Top-n items for many users.

    users: ndarray (m,) int64 training-matrix rows; user_items: csr_matrix (m, n_items) float32,
    their rows (also the items excluded when ``exclude_seen``). Returns (items (m, n) int32,
    -1 padded; scores (m, n) float32).
    """
    rows = as_csr32(user_items)
    m = users.shape[0]
    items = np.full((m, n), -1, dtype=np.int32)
    scores = np.full((m, n), -np.inf, dtype=np.float32)
    for start in range(0, m, batch_size):
        stop = min(start + batch_size, m)
        batch = rows[start:stop]
        s = np.array(scorer.score(users[start:stop], batch), dtype=np.float32, copy=True)
        items[start:stop], scores[start:stop] = top_n_from_scores(
            s, n, batch if exclude_seen else None
        )
    return items, scores
