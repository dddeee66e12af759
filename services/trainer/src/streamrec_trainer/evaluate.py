"""Offline evaluation on a temporal holdout: full-catalogue ranking metrics at several K.

Protocol (the reference protocol of the Online Retail README):

* global temporal split: events in the last ``test_fraction`` of the time span are the test
  period, everything before is training (``dataset.temporal_split``);
* every model ranks the full catalogue of items known in training (no sampled negatives);
* targets of a user: items with a positive net weight in the test period that exist in the
  training catalogue (an item first seen in the test period cannot be ranked by any model
  trained before it, so it is not a target);
* novel items only (default): items the user interacted with in training are removed from both
  the ranking and the targets;
* users with no training history are skipped (cold-start users are a separate problem), as are
  users left with no target; the counts are reported.

Metrics at each K: HitRate (>= 1 target in the top K), Precision (hits / K), Recall
(hits / |targets|), NDCG (binary gains, ideal DCG over min(|targets|, K) positions),
MAP (sum of precision at each hit rank / min(|targets|, K)), averaged over users; Coverage
(distinct items recommended in anyone's top K / catalogue size).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from streamrec_shared.profile import segment_for
from streamrec_trainer.dataset import (
    InteractionMatrix,
    Interactions,
    build_matrix,
    index_of,
    temporal_split,
)
from streamrec_trainer.models.base import Scorer
from streamrec_trainer.models.topn import top_n

logger = logging.getLogger(__name__)

DEFAULT_KS = (5, 10, 20)
METRIC_NAMES = ("hr", "precision", "recall", "ndcg", "map", "coverage")


@dataclass(frozen=True)
class Holdout:
    """A train period and the targets of its test period.

    train: the training-period events; cutoff: split time (unix s), training weights are decayed
    to it; item_ids (n_items,): the training catalogue (columns of every matrix and score);
    user_ids (n_users,): users with training history (rows); users (m,) int64: rows of the users
    evaluated; targets: csr_matrix (m, n_items) float32, 1.0 per target item; novel_only: the
    protocol option; the n_skipped_* counts describe who was skipped; n_eligible_users how many
    could have been evaluated (more than m when a sample was drawn; -1 = not recorded, i.e. m).
    """

    train: Interactions
    cutoff: float
    user_ids: NDArray[np.str_]
    item_ids: NDArray[np.str_]
    users: NDArray[np.int64]
    targets: sp.csr_matrix
    novel_only: bool
    n_test_users: int
    n_skipped_no_history: int
    n_skipped_no_targets: int
    n_eligible_users: int = -1
    _matrices: dict[float | None, InteractionMatrix] = field(
        default_factory=dict, repr=False, compare=False
    )

    def matrix(self, half_life_days: float | None = None) -> InteractionMatrix:
        """Training matrix (n_users, n_items) with the given decay, cached per half-life."""
        if half_life_days not in self._matrices:
            self._matrices[half_life_days] = build_matrix(
                self.train,
                half_life_days=half_life_days,
                reference_ts=self.cutoff,
                user_ids=self.user_ids,
                item_ids=self.item_ids,
            )
        return self._matrices[half_life_days]

    def summary(self) -> dict[str, int | float | bool]:
        return {
            "cutoff": self.cutoff,
            "n_train_events": len(self.train),
            "n_train_users": int(self.user_ids.size),
            "n_items": int(self.item_ids.size),
            "n_test_users": self.n_test_users,
            "n_evaluated_users": int(self.users.size),
            "n_eligible_users": (
                int(self.users.size) if self.n_eligible_users < 0 else self.n_eligible_users
            ),
            "n_skipped_no_history": self.n_skipped_no_history,
            "n_skipped_no_targets": self.n_skipped_no_targets,
            "novel_only": self.novel_only,
        }


def make_holdout(
    train: Interactions,
    test: Interactions,
    cutoff: float,
    *,
    novel_only: bool = True,
    max_users: int | None = None,
    seed: int = 0,
) -> Holdout:
    """Build the holdout from already split events (see the module docstring for the rules).

    ``max_users`` evaluates a uniform random sample (``seed``) of that many of the eligible
    users instead of all of them: ranking the full catalogue costs O(users x items) per
    algorithm, while the standard error of a mean metric only shrinks as 1/sqrt(users) (a few
    thousandths for NDCG@20 with 10k users).
    """
    base = build_matrix(train, reference_ts=cutoff)
    user_ids, item_ids = base.user_ids, base.item_ids
    test_m = build_matrix(test, item_ids=item_ids, reference_ts=cutoff)
    test_users = test.distinct_users()
    # Rows of test_m follow test_m.user_ids; map them onto training rows.
    train_rows = index_of(user_ids, test_m.user_ids)
    has_history = train_rows >= 0
    targets = sp.csr_matrix(test_m.matrix[has_history], dtype=np.float32)
    targets.data[:] = 1.0
    if novel_only:
        seen = sp.csr_matrix(base.matrix[train_rows[has_history]], dtype=np.float32)
        seen.data[:] = 1.0
        targets = sp.csr_matrix(targets - targets.multiply(seen), dtype=np.float32)
        targets.eliminate_zeros()
    n_targets = np.diff(targets.indptr)
    keep = np.flatnonzero(n_targets > 0)
    n_no_history = int(np.setdiff1d(test_users, user_ids).size)
    n_eligible = int(keep.size)
    if max_users is not None and keep.size > max_users:
        pick = np.random.default_rng(seed).choice(keep.size, size=max_users, replace=False)
        keep = keep[np.sort(pick)]
    holdout = Holdout(
        train=train,
        cutoff=float(cutoff),
        user_ids=user_ids,
        item_ids=item_ids,
        users=train_rows[has_history][keep].astype(np.int64),
        targets=sp.csr_matrix(targets[keep], dtype=np.float32),
        novel_only=novel_only,
        n_test_users=int(test_users.size),
        n_skipped_no_history=n_no_history,
        n_skipped_no_targets=int(test_users.size) - n_no_history - n_eligible,
        n_eligible_users=n_eligible,
    )
    holdout._matrices[None] = base
    logger.info("holdout: %s", holdout.summary())
    return holdout


def temporal_holdout(
    interactions: Interactions,
    *,
    test_fraction: float = 0.2,
    novel_only: bool = True,
    max_users: int | None = None,
    seed: int = 0,
) -> Holdout:
    """Split by event time (last ``test_fraction`` of the span is test) and build the holdout
    (``max_users``, ``seed``: see ``make_holdout``)."""
    train, test, cutoff = temporal_split(interactions, test_fraction)
    return make_holdout(train, test, cutoff, novel_only=novel_only, max_users=max_users, seed=seed)


def _mean(values: NDArray[Any]) -> float:
    return float(np.mean(values)) if values.size else 0.0


def rank_metrics(
    ranked: NDArray[np.int32],
    targets: sp.csr_matrix,
    n_items: int,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, float]:
    """Metrics of ranked lists against targets.

    ranked: ndarray (m, >= max(ks)) int32 item indices best first, -1 = empty slot;
    targets: csr_matrix (m, n_items), stored cells are the relevant items.
    Returns {"hr@K", "precision@K", "recall@K", "ndcg@K", "map@K", "coverage@K"} floats.
    """
    m = ranked.shape[0]
    kmax = max(ks)
    if ranked.shape[1] < kmax:
        raise ValueError("ranked lists shorter than max(ks)")
    lists = ranked[:, :kmax]
    tgt = sp.csr_matrix(targets, dtype=np.float32)
    n_tgt = np.diff(tgt.indptr).astype(np.float64)
    hits = np.zeros(lists.shape, dtype=bool)
    for r in range(m):
        row_targets = tgt.indices[tgt.indptr[r] : tgt.indptr[r + 1]]
        hits[r] = np.isin(lists[r], row_targets) & (lists[r] >= 0)
    disc = 1.0 / np.log2(np.arange(2, kmax + 2))
    cum_disc = np.cumsum(disc)
    out: dict[str, float] = {}
    for k in ks:
        h = hits[:, :k]
        n_hits = h.sum(axis=1).astype(np.float64)
        denom = np.minimum(n_tgt, k)
        safe = np.maximum(denom, 1.0)
        dcg = (h * disc[:k]).sum(axis=1)
        idcg = np.where(denom > 0, cum_disc[np.maximum(denom.astype(int), 1) - 1], 1.0)
        prec_at = np.cumsum(h, axis=1) / np.arange(1, k + 1)
        ap = (prec_at * h).sum(axis=1) / safe
        valid = lists[:, :k][lists[:, :k] >= 0]
        out[f"hr@{k}"] = _mean(n_hits > 0)
        out[f"precision@{k}"] = _mean(n_hits / k)
        out[f"recall@{k}"] = _mean(n_hits / np.maximum(n_tgt, 1.0))
        out[f"ndcg@{k}"] = _mean(dcg / idcg)
        out[f"map@{k}"] = _mean(ap)
        out[f"coverage@{k}"] = float(np.unique(valid).size / n_items) if n_items else 0.0
    return out


def reported_metrics(ks: Sequence[int] = DEFAULT_KS) -> frozenset[str]:
    """Every metric key ``rank_metrics`` reports at ``ks`` (``"ndcg@20"``, ...), read from it."""
    empty = np.full((1, max(ks)), -1, dtype=np.int32)
    return frozenset(rank_metrics(empty, sp.csr_matrix((1, 1), dtype=np.float32), 1, ks))


def _ranked(
    scorer: Scorer, holdout: Holdout, n: int, half_life_days: float | None, batch_size: int
) -> NDArray[np.int32]:
    """Top ``n`` (m, n) int32 of every evaluated user over the full training catalogue (the
    user's training row decayed with ``half_life_days``; with ``novel_only`` its items are
    excluded)."""
    x = holdout.matrix(half_life_days).matrix
    users = holdout.users
    ranked, _ = top_n(
        scorer, users, x[users], n, exclude_seen=holdout.novel_only, batch_size=batch_size
    )
    return ranked


def ndcg_per_user(ranked: NDArray[np.int32], targets: sp.csr_matrix, k: int) -> NDArray[np.float64]:
    """NDCG@k (m,) float64 of ranked lists (m, >= k) int32 (-1 = empty) against targets
    (m, n_items), binary gains; 0 for a user without targets."""
    tgt = sp.csr_matrix(targets, dtype=np.float32)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    cum = np.cumsum(disc)
    out = np.zeros(ranked.shape[0], dtype=np.float64)
    for r in range(ranked.shape[0]):
        row_targets = tgt.indices[tgt.indptr[r] : tgt.indptr[r + 1]]
        if row_targets.size == 0:
            continue
        hits = np.isin(ranked[r, :k], row_targets) & (ranked[r, :k] >= 0)
        out[r] = float((hits * disc).sum() / cum[min(row_targets.size, k) - 1])
    return out


def evaluate(
    scorer: Scorer,
    holdout: Holdout,
    *,
    half_life_days: float | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Rank the full training catalogue for every evaluated user and score the lists.

    The scorer gets each user's training row decayed with ``half_life_days`` (the same matrix
    it was fitted on); with ``novel_only`` those items are excluded from the ranking.
    """
    return evaluate_users(
        scorer, holdout, half_life_days=half_life_days, ks=ks, batch_size=batch_size
    )[0]


def evaluate_users(
    scorer: Scorer,
    holdout: Holdout,
    *,
    half_life_days: float | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    k: int = 20,
    batch_size: int = 1024,
) -> tuple[dict[str, float], NDArray[np.float64]]:
    """``evaluate``'s metrics and the NDCG@k (m,) float64 of every evaluated user (in
    ``holdout.users`` order) from the same ranking: the paired samples a champion/challenger
    test compares (same users, same targets)."""
    ranked = _ranked(scorer, holdout, max(*ks, k), half_life_days, batch_size)
    metrics = rank_metrics(ranked, holdout.targets, int(holdout.item_ids.size), ks)
    metrics["n_users"] = float(holdout.users.size)
    return metrics, ndcg_per_user(ranked, holdout.targets, k)


def user_event_counts(holdout: Holdout) -> NDArray[np.int64]:
    """Training-period events (m,) int64 of every evaluated user, in ``holdout.users`` order
    (what the user's live profile counts when the user asks: ``profile.segment_for``)."""
    train = holdout.train
    per_code = np.bincount(train.user_codes, minlength=train.user_vocab.size)
    rows = index_of(train.user_vocab, holdout.user_ids[holdout.users])
    return np.where(rows >= 0, per_code[np.maximum(rows, 0)], 0).astype(np.int64)


MIN_SEGMENT_USERS = 20
"""Fewest evaluated users a segment needs to get its own figures (a standard error from fewer
is itself too uncertain)."""


def paired_difference(
    a: NDArray[np.float64], b: NDArray[np.float64]
) -> tuple[NDArray[np.float64], float, float]:
    """The per-user differences ``a - b`` (the same users in the same order), their mean and
    its standard error (0 with fewer than two users; mean 0 with none)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mean = float(d.mean()) if d.size else 0.0
    se = float(np.std(d, ddof=1) / np.sqrt(d.size)) if d.size > 1 else 0.0
    return d, mean, se


def paired_se(per_user: Mapping[str, NDArray[np.float64]]) -> dict[str, float]:
    """Standard error of each algorithm's mean per-user metric minus the best algorithm's on
    the same users (0 for the best): how surely the holdout ranks it below the best."""
    if not per_user:
        return {}
    best = max(per_user, key=lambda name: float(per_user[name].mean()))
    return {name: paired_difference(v, per_user[best])[2] for name, v in per_user.items()}


def segment_figures(
    per_user: Mapping[str, NDArray[np.float64]],
    event_counts: NDArray[np.int64],
    metric: str,
    *,
    min_users: int = MIN_SEGMENT_USERS,
) -> dict[str, dict[str, dict[str, float]]]:
    """Per user segment (``profile.segment_for`` of the user's training events, as serving
    segments users), each algorithm's mean ``metric`` and its paired standard error against
    the segment's best: {segment: {algorithm: {metric, metric_paired_se, n_users}}}; segments
    with fewer than ``min_users`` users are left out."""
    labels = np.array([segment_for(int(n)) for n in event_counts.tolist()], dtype=object)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for segment in sorted(set(labels.tolist())):
        rows = np.flatnonzero(labels == segment)
        if rows.size < min_users:
            continue
        part = {name: values[rows] for name, values in per_user.items()}
        se = paired_se(part)
        out[segment] = {
            name: {
                metric: float(values.mean()),
                f"{metric}_paired_se": se[name],
                "n_users": float(rows.size),
            }
            for name, values in part.items()
        }
    return out
