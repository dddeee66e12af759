"""Factor math for serving: ALS user fold-in and exact top-k.

Used by the stream processor (fold a user's live profile into the latest ALS item space after
each event) and by the recommender (score + top-k). Pure numpy, no I/O.

Confidence convention
    The trainer factorises the confidence matrix ``C`` with ``c_ui = 1 + alpha * w_ui`` where
    ``w_ui > 0`` is the user's net decayed event weight on the item
    (``streamrec_shared.weights``). It hands ``C`` to implicit with implicit's own ``alpha`` set
    to 1, so implicit's solver sees exactly these confidences. ``alpha`` is stored in
    ``als.npz``; callers of ``fold_in`` compute ``confidence(w, alpha)`` themselves.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def confidence(weights: ArrayLike, alpha: float) -> NDArray[np.float32]:
    """Hu-Koren-Volinsky confidence ``1 + alpha * w`` for net weights (n,): ndarray (n,) float32."""
    return (1.0 + alpha * np.asarray(weights, dtype=np.float64)).astype(np.float32)


def gram(item_factors: NDArray[np.floating]) -> NDArray[np.float64]:
    """``Y^T Y`` of the item factors.

    Parameters
    ----------
    item_factors : ndarray (n_items, f) float32, rows are items.

    Returns
    -------
    ndarray (f, f) float64. Compute it once per model version and pass it to ``fold_in``.
    """
    y = np.asarray(item_factors, dtype=np.float64)
    return y.T @ y


def fold_in(
    item_factors: NDArray[np.floating],
    item_indices: ArrayLike,
    confidences: ArrayLike,
    regularization: float,
    *,
    yty: NDArray[np.floating] | None = None,
) -> NDArray[np.float32]:
    """Solve the implicit-ALS least-squares problem for one user against fixed item factors.

    ``x = (Y^T Y + Y_u^T (C_u - I) Y_u + reg * I)^{-1} Y_u^T C_u p(u)`` with ``p_ui = 1`` for the
    given items. This is exactly one ALS user step, the same system implicit solves for
    ``recalculate_user=True`` (there in float32, here in float64).

    Parameters
    ----------
    item_factors : ndarray (n_items, f) float32, rows are items (``Y``).
    item_indices : array_like (n_u,) int, row indices into ``item_factors``; must be unique.
    confidences : array_like (n_u,) float, ``c_ui = 1 + alpha * w_ui`` (see ``confidence``).
        As in implicit, a negative value ``-c`` means "disliked with confidence c": it enters
        ``Y_u^T (C_u - I) Y_u`` with ``c`` but contributes nothing to the right-hand side.
    regularization : float, the model's ``regularization`` (``als.npz``).
    yty : ndarray (f, f), optional, precomputed ``gram(item_factors)``. With it, the cost per call
        is O(n_u f^2 + f^3) whatever the catalogue size.

    Returns
    -------
    ndarray (f,) float32 user factor; all zeros when ``item_indices`` is empty (as implicit).
    """
    y = np.asarray(item_factors)
    n_items, n_factors = y.shape
    idx = np.asarray(item_indices, dtype=np.int64).reshape(-1)
    conf = np.asarray(confidences, dtype=np.float64).reshape(-1)
    if idx.shape != conf.shape:
        raise ValueError("item_indices and confidences must have the same length")
    if idx.size == 0:
        return np.zeros(n_factors, dtype=np.float32)
    if idx.min() < 0 or idx.max() >= n_items:
        raise IndexError("item index out of range")
    if np.unique(idx).size != idx.size:
        raise ValueError("item_indices must be unique (sum weights per item before confidence)")
    yu = y[idx].astype(np.float64)
    a = np.array(gram(y) if yty is None else yty, dtype=np.float64, copy=True)
    a += yu.T @ ((np.abs(conf) - 1.0)[:, None] * yu)
    a[np.diag_indices(n_factors)] += regularization
    b = yu.T @ np.maximum(conf, 0.0)
    return np.linalg.solve(a, b).astype(np.float32)


def top_k(
    scores: NDArray[np.floating],
    k: int,
    exclude_indices: ArrayLike | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Exact top-k of a score vector, best first.

    Parameters
    ----------
    scores : ndarray (n,) float32, one score per item. Items scored -inf or NaN are never
        returned, so callers can filter by setting scores to -inf.
    k : int >= 0.
    exclude_indices : array_like of int, optional, item indices never to return (already seen,
        out of stock, ...). Out-of-range indices are ignored.

    Returns
    -------
    (indices ndarray (m,) int64, scores ndarray (m,) float32), sorted by descending score, ties
    broken by ascending index; ``m = min(k, number of eligible items)``.
    """
    if k < 0:
        raise ValueError("k must be >= 0")
    s = np.asarray(scores, dtype=np.float32).reshape(-1)
    eligible = s > -np.inf  # False for -inf and NaN
    if exclude_indices is not None:
        ex = np.asarray(exclude_indices, dtype=np.int64).reshape(-1)
        ex = ex[(ex >= 0) & (ex < s.size)]
        if ex.size:
            eligible = eligible.copy()
            eligible[ex] = False
    n_eligible = int(np.count_nonzero(eligible))
    m = min(k, n_eligible)
    if m == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    if n_eligible < s.size:
        s = np.where(eligible, s, np.float32(-np.inf))
    if m < s.size:
        # Take every item tied with the m-th best so that tie-breaking by index is exact.
        part = np.argpartition(-s, m - 1)[:m]
        cand = np.flatnonzero(s >= s[part].min())
    else:
        cand = np.arange(s.size)
    order = np.lexsort((cand, -s[cand]))[:m]
    best = cand[order].astype(np.int64)
    return best, s[best]
