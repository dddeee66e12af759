"""The active version (the champion) scored on the candidate's holdout through its own artifacts.

Champion and challenger are ranked on ONE split: the candidate's holdout (same users, same
training histories, same targets, same K). The champion ranks with what it published (its
bundle, read with ``streamrec_shared.artifact_store.open_version``), the way the recommender
serves it:

* a user's history is the holdout's training row (events before the cutoff), mapped into the
  champion's item space; ``als`` folds it into the champion's item factors (one exact ALS user
  step, as the stream processor does with a live profile), ``itemknn`` and ``ease`` sum the
  neighbour rows of the history, ``content`` takes the weighted mean content factor of the
  history, ``popular`` ranks by the champion's popularity;
* items the champion does not know (new since it was trained) are never ranked by it: a target
  among them is a miss;
* a user none of whose history the champion knows gets the champion's popularity (what serving
  falls back to for such a user), so the user counts for both versions.

The champion's stored user factors are not used: they were fitted on the champion's window,
which may overlap the candidate's test period (scoring with them would let the champion see the
targets). Its item-side arrays could still have seen that period: ``pipeline.evaluate_fitted``
then restricts the targets of both versions to the events after the champion's data end
(``overlap_s`` in the result says how much of the test period it saw).

An algorithm the champion cannot score from its artifacts (not shipped, or offline-only) is
left out of the comparison (``comparable: false``). Plug-ins add a builder with
``register_builder``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from streamrec_shared.artifacts import ModelBundle
from streamrec_shared.factors import confidence, fold_in, gram
from streamrec_trainer.evaluate import (
    DEFAULT_KS,
    Holdout,
    evaluate,
    evaluate_users,
    paired_difference,
)
from streamrec_trainer.models.base import Scorer

logger = logging.getLogger(__name__)

NEG_INF = np.float32(-np.inf)


def columns(holdout_ids: NDArray[np.str_], space_ids: NDArray[np.str_]) -> NDArray[np.int64]:
    """For each id of ``holdout_ids`` its index in ``space_ids`` or -1: ndarray (n,) int64."""
    lookup = {str(i): k for k, i in enumerate(space_ids.tolist())}
    return np.fromiter(
        (lookup.get(str(i), -1) for i in holdout_ids.tolist()),
        dtype=np.int64,
        count=holdout_ids.size,
    )


@dataclass
class BundleScorer:
    """A ``Scorer`` over the holdout's item columns backed by one bundle part.

    rank: (rows of the user's history in the part's space, their weights) -> scores over the
    part's items (n_space,) or None when the history gives nothing (then popularity);
    space: the part's item ids; fallback: popularity over the part's items (or None).
    """

    name: str
    holdout_items: NDArray[np.str_]
    space: NDArray[np.str_]
    rank: Callable[[NDArray[np.int64], NDArray[np.float32]], NDArray[np.float32] | None]
    fallback: NDArray[np.float32] | None

    def __post_init__(self) -> None:
        self._cols = columns(self.holdout_items, self.space)  # holdout column -> space index
        self._known = np.flatnonzero(self._cols >= 0)

    def score(self, users: NDArray[np.int64], user_items: sp.csr_matrix) -> NDArray[np.float32]:
        del users  # the champion does not use its own user factors (see the module docstring)
        x = sp.csr_matrix(user_items, dtype=np.float32)
        out = np.full((x.shape[0], self.holdout_items.size), NEG_INF, dtype=np.float32)
        for r in range(x.shape[0]):
            idx = x.indices[x.indptr[r] : x.indptr[r + 1]]
            w = x.data[x.indptr[r] : x.indptr[r + 1]]
            mapped = self._cols[idx]
            ok = (mapped >= 0) & (w > 0)
            scores = self.rank(mapped[ok], w[ok]) if ok.any() else None
            if scores is None:
                scores = self.fallback
            if scores is None:
                continue
            out[r, self._known] = scores[self._cols[self._known]]
        return out


def _popularity(bundle: ModelBundle) -> NDArray[np.float32] | None:
    return None if bundle.popular is None else bundle.popular.item_scores


def _als(bundle: ModelBundle, holdout_items: NDArray[np.str_]) -> BundleScorer:
    als = bundle.als
    y = als.item_factors
    yty = gram(y)

    def rank(rows: NDArray[np.int64], w: NDArray[np.float32]) -> NDArray[np.float32]:
        u = fold_in(y, rows, confidence(w, als.alpha), als.regularization, yty=yty)
        return np.asarray(y @ u, dtype=np.float32)

    return BundleScorer("als", holdout_items, als.item_ids, rank, _popularity(bundle))


def _neighbour_lists(
    name: str,
    bundle: ModelBundle,
    holdout_items: NDArray[np.str_],
    neighbours: NDArray[np.int32],
    scores: NDArray[np.float32],
    *,
    binary: bool = False,
) -> BundleScorer:
    """Scores as sums of the history's neighbour rows (in the ALS item space), as serving
    computes them; ``binary``: 1.0 per history item instead of its weight."""
    n = bundle.n_items
    valid = neighbours >= 0
    rows = np.repeat(np.arange(n), neighbours.shape[1]).reshape(neighbours.shape)[valid]
    sim = sp.csr_matrix((scores[valid], (rows, neighbours[valid])), shape=(n, n))

    def rank(idx: NDArray[np.int64], w: NDArray[np.float32]) -> NDArray[np.float32]:
        weights = np.ones_like(w) if binary else w
        s = np.asarray(sim[idx].T @ weights, dtype=np.float32).reshape(-1)
        s[idx] = NEG_INF  # own items are excluded by the evaluation anyway
        return s

    return BundleScorer(name, holdout_items, bundle.als.item_ids, rank, _popularity(bundle))


def _itemknn(bundle: ModelBundle, holdout_items: NDArray[np.str_]) -> BundleScorer | None:
    knn = bundle.itemknn
    if knn is None:
        return None
    return _neighbour_lists("itemknn", bundle, holdout_items, knn.neighbours, knn.neighbour_scores)


def _ease(bundle: ModelBundle, holdout_items: NDArray[np.str_]) -> BundleScorer | None:
    arrays = bundle.extra_files.get("ease")
    if arrays is None:
        return None
    return _neighbour_lists(
        "ease", bundle, holdout_items, arrays["neighbours"], arrays["neighbour_scores"],
        binary=bool(arrays["binary"]),
    )  # fmt: skip


def _content(bundle: ModelBundle, holdout_items: NDArray[np.str_]) -> BundleScorer | None:
    content = bundle.content
    if content is None:
        return None
    factors = content.item_factors
    pop = _popularity(bundle)
    fallback = None
    if pop is not None:  # popularity is in the ALS item space: map it onto the content items
        cols = columns(content.item_ids, bundle.als.item_ids)
        fallback = np.where(cols >= 0, pop[np.maximum(cols, 0)], NEG_INF).astype(np.float32)

    def rank(idx: NDArray[np.int64], w: NDArray[np.float32]) -> NDArray[np.float32] | None:
        total = float(w.sum())
        if total <= 0:
            return None
        q = (factors[idx] * w[:, None]).sum(axis=0) / total
        return np.asarray(factors @ q, dtype=np.float32)

    return BundleScorer("content", holdout_items, content.item_ids, rank, fallback)


def _popular(bundle: ModelBundle, holdout_items: NDArray[np.str_]) -> BundleScorer | None:
    pop = _popularity(bundle)
    if pop is None:
        return None
    return BundleScorer("popular", holdout_items, bundle.als.item_ids, lambda i, w: None, pop)


Builder = Callable[[ModelBundle, NDArray[np.str_]], BundleScorer | None]
BUILDERS: dict[str, Builder] = {
    "als": _als,
    "itemknn": _itemknn,
    "ease": _ease,
    "content": _content,
    "popular": _popular,
}


def register_builder(name: str, builder: Builder) -> None:
    """How the champion ranks with algorithm ``name`` from its bundle (a plug-in's hook)."""
    BUILDERS[name] = builder


def data_end(bundle: ModelBundle) -> float:
    """The end of the bundle's training data (unix s)."""
    return datetime.fromisoformat(bundle.data_window.end).timestamp()


def evaluate_bundle(
    bundle: ModelBundle,
    holdout: Holdout,
    algorithms: list[str],
    *,
    half_life_days: float | None,
) -> dict[str, Any]:
    """Offline metrics of ``bundle`` on ``holdout`` per algorithm (those it can score), with the
    share of the holdout's catalogue and test period the bundle knows."""
    known = columns(holdout.item_ids, bundle.als.item_ids) >= 0
    end_ts = data_end(bundle)
    results: dict[str, Any] = {}
    for name in algorithms:
        builder = BUILDERS.get(name)
        shipped = name in bundle.algorithms
        scorer = builder(bundle, holdout.item_ids) if builder is not None and shipped else None
        if scorer is None:
            continue
        results[name] = evaluate(scorer, holdout, half_life_days=half_life_days, ks=DEFAULT_KS)
    return {
        "version": bundle.version,
        "algorithms": results,
        "items_known": round(float(known.mean()) if known.size else 0.0, 4),
        "overlap_s": max(0.0, end_ts - holdout.cutoff),
    }


def paired_ndcg(
    candidate: Scorer,
    bundle: ModelBundle,
    holdout: Holdout,
    algorithm: str,
    k: int,
    *,
    half_life_days: float | None,
) -> dict[str, Any] | None:
    """Paired per-user comparison of NDCG@k on the same users: mean difference (candidate -
    champion), its standard error and z (None when the champion cannot score ``algorithm``)."""
    builder = BUILDERS.get(algorithm)
    scorer = (
        builder(bundle, holdout.item_ids) if builder and algorithm in bundle.algorithms else None
    )
    if scorer is None or holdout.users.size < 2:
        return None
    a = evaluate_users(candidate, holdout, half_life_days=half_life_days, ks=(k,), k=k)[1]
    b = evaluate_users(scorer, holdout, half_life_days=half_life_days, ks=(k,), k=k)[1]
    d, mean, se = paired_difference(a, b)
    z = mean / se if se > 0 else (0.0 if mean == 0 else float(np.sign(mean)) * 1e9)
    return {
        "algorithm": algorithm,
        "k": k,
        "users": int(d.size),
        "mean_diff": round(mean, 6),
        "se": round(se, 6),
        "z": round(z, 3),
        "candidate_better": int((d > 0).sum()),
        "champion_better": int((d < 0).sum()),
    }
