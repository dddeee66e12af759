"""``hybrid`` offline: the serving rank fusion of the fitted members, as a ``Scorer``, and the
search for its member weights on the holdout.

``hybrid`` is not trained (``streamrec_shared.algorithms``: it combines the others), but the
recommender serves it and its ``auto`` policy starts from the offline figures of every arm, so
the holdout evaluation scores it too: the same weighted reciprocal-rank fusion as
``streamrec_recommender.serving.algorithms.hybrid`` over each member's top ``depth`` (the
user's own items never take a rank, as the serving filter removes them before candidates are
cut), plus trending under the name ``popular``: serving fuses the stream processor's live
trending, so the fusion here takes trending as it stood at the end of the training data
(``TrendingScorer``), not the ``popular`` model (on the Online Retail protocol the two rank
novel purchases at NDCG@20 0.100 and 0.049).

Member weights (``learn_weights``): the registry's ``hybrid_weight`` of each member (and
``TRENDING_WEIGHT`` for ``popular``) are defaults; the trainer searches the weights that give
the best mean NDCG@K on its holdout (coordinate ascent over ``GRID``, each member's ranked
lists computed once), and ships them when they also beat the defaults out of sample: the search
is cross-fitted (weights chosen on one half of the holdout users, scored on the other, and the
other way round), so the figure it is judged by was not used to choose the weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from streamrec_shared.algorithms import REGISTRY
from streamrec_shared.weights import decayed_event_weights
from streamrec_trainer.dataset import Interactions, index_of
from streamrec_trainer.models.base import Scorer
from streamrec_trainer.models.topn import top_n_from_scores

TRENDING_WEIGHT = 0.3
"""As ``serving.algorithms.hybrid.TRENDING_WEIGHT`` (the default weight of trending)."""
TRENDING_HALF_LIFE_DAYS = 1.0
"""Half-life of the trending list the fusion uses: the stream processor's live trending
(``trending_half_life_hours`` default, 24 h), which the served ``hybrid`` fuses."""
DEPTH = 100
"""Candidates per member, as the recommender reads for a top-20 (``Engine.candidates``)."""
K0 = 60.0
TREND = "popular"
"""The trending member: added to the fusion when another member produced a list."""
GRID = (0.0, 0.25, 0.5, 1.0, 2.0)
"""Values each member weight may take in the search (relative: the fusion is scale-free)."""
MAX_PASSES = 3


@dataclass(frozen=True)
class TrendingScorer:
    """Live trending as it stood at ``at_ts``: each item's event weights decayed with
    ``TRENDING_HALF_LIFE_DAYS`` (as the stream processor's trending sets sum them), the same
    list for every user. What the served ``hybrid`` fuses as ``popular``; the trainer's
    ``popular`` model (decayed distinct buyers over the window) ranks differently."""

    item_scores: NDArray[np.float32]
    name: str = "trending"

    @classmethod
    def at(
        cls,
        interactions: Interactions,
        item_ids: NDArray[np.str_],
        at_ts: float,
        half_life_days: float = TRENDING_HALF_LIFE_DAYS,
    ) -> TrendingScorer:
        """From the events before ``at_ts`` over the columns ``item_ids`` (n_items,)."""
        before = interactions.timestamps <= at_ts
        cols = index_of(item_ids, interactions.item_vocab)[interactions.item_codes[before]]
        weights = decayed_event_weights(
            interactions.event_types[before], interactions.values[before],
            interactions.timestamps[before], at_ts, half_life_days,
        )  # fmt: skip
        ok = cols >= 0
        scores = np.bincount(cols[ok], weights=weights[ok], minlength=item_ids.size)
        return cls(scores.astype(np.float32))

    def score(self, users: NDArray[np.int64], user_items: sp.csr_matrix) -> NDArray[np.float32]:
        """The trending scores repeated for every user: (m, n_items) float32 (-inf for items
        nobody had, which trending does not list)."""
        del user_items
        row = np.where(self.item_scores > 0, self.item_scores, -np.inf).astype(np.float32)
        return np.broadcast_to(row, (users.shape[0], row.size)).copy()


def default_weights(names: set[str] | frozenset[str] | None = None) -> dict[str, float]:
    """The registry's member weights plus ``popular`` at ``TRENDING_WEIGHT`` (restricted to
    ``names`` when given)."""
    out = {n: w for n, w in REGISTRY.hybrid_members}
    out[TREND] = TRENDING_WEIGHT
    return {n: w for n, w in out.items() if names is None or n in names}


@dataclass(frozen=True)
class FusionScorer:
    """Weighted reciprocal-rank fusion of member scorers: score(j) = sum w / (K0 + rank)."""

    members: tuple[tuple[Scorer, float], ...]
    depth: int = DEPTH
    name: str = "hybrid"

    def score(self, users: NDArray[np.int64], user_items: sp.csr_matrix) -> NDArray[np.float32]:
        m, n_items = user_items.shape
        fused = np.zeros((m, n_items), dtype=np.float32)
        seen = sp.csr_matrix(user_items)
        for scorer, weight in self.members:
            if weight <= 0:
                continue
            s = np.array(scorer.score(users, user_items), dtype=np.float32, copy=True)
            top, _ = top_n_from_scores(s, self.depth, seen)
            rows, ranks = np.nonzero(top >= 0)
            np.add.at(fused, (rows, top[rows, ranks]), weight / (K0 + ranks + 1.0))
        fused[fused <= 0] = -np.inf
        return fused


def fusion(
    models: Mapping[str, Scorer], weights: Mapping[str, float] | None = None
) -> FusionScorer | None:
    """The hybrid scorer over the fitted ``models`` with ``weights`` (default
    ``default_weights``); None when no member other than ``popular`` was fitted."""
    chosen = default_weights() if weights is None else dict(weights)
    members = [(models[n], w) for n, w in chosen.items() if n in models and n != TREND and w > 0]
    if not members:
        return None
    if TREND in models and chosen.get(TREND, 0.0) > 0:
        members.append((models[TREND], chosen[TREND]))
    return FusionScorer(tuple(members))


@dataclass(frozen=True)
class MemberLists:
    """Every member's top ``DEPTH`` for the evaluated users, as flat arrays over (user, item)
    cells: ``cell`` (c,) int64 index into the unique cells (sorted by user, then item),
    ``member`` (c,) int64 member position, ``base`` (c,) float64 ``1 / (K0 + rank)``; per
    unique cell its ``row`` (u,) int64 and ``hit`` (u,) bool (a target of that user);
    ``idcg`` (m,) float64 ideal DCG@k of each user."""

    names: tuple[str, ...]
    cell: NDArray[np.int64]
    member: NDArray[np.int64]
    base: NDArray[np.float64]
    row: NDArray[np.int64]
    hit: NDArray[np.bool_]
    idcg: NDArray[np.float64]
    k: int

    @classmethod
    def build(
        cls,
        models: Mapping[str, Scorer],
        names: tuple[str, ...],
        users: NDArray[np.int64],
        user_items: sp.csr_matrix,
        targets: sp.csr_matrix,
        k: int,
        batch_size: int = 1024,
    ) -> MemberLists:
        """Rank the catalogue once per member for ``users`` (m,) with their training rows
        ``user_items`` (m, n_items) (excluded from the lists) and ``targets`` (m, n_items)."""
        m, n_items = user_items.shape
        rows_p: list[NDArray[np.int64]] = []
        items_p: list[NDArray[np.int64]] = []
        members_p: list[NDArray[np.int64]] = []
        base_p: list[NDArray[np.float64]] = []
        x = sp.csr_matrix(user_items, dtype=np.float32)
        for pos, name in enumerate(names):
            for start in range(0, m, batch_size):
                stop = min(start + batch_size, m)
                batch = x[start:stop]
                s = np.array(models[name].score(users[start:stop], batch), dtype=np.float32)
                top, _ = top_n_from_scores(s, DEPTH, batch)
                r, rank = np.nonzero(top >= 0)
                rows_p.append(r.astype(np.int64) + start)
                items_p.append(top[r, rank].astype(np.int64))
                members_p.append(np.full(r.size, pos, dtype=np.int64))
                base_p.append((1.0 / (K0 + rank + 1.0)).astype(np.float64))
        rows, items = np.concatenate(rows_p), np.concatenate(items_p)
        keys, cell = np.unique(rows * n_items + items, return_inverse=True)
        tgt = sp.csr_matrix(targets, dtype=np.float32)
        tgt_keys = np.repeat(np.arange(m, dtype=np.int64), np.diff(tgt.indptr)) * n_items
        hit = np.isin(keys, tgt_keys + tgt.indices.astype(np.int64))
        cum = np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))
        n_tgt = np.minimum(np.diff(tgt.indptr), k)
        idcg = np.where(n_tgt > 0, cum[np.maximum(n_tgt, 1) - 1], 1.0)
        return cls(
            names=names,
            cell=cell.reshape(-1).astype(np.int64),
            member=np.concatenate(members_p),
            base=np.concatenate(base_p),
            row=keys // n_items,
            hit=hit,
            idcg=idcg,
            k=k,
        )

    def user_ndcg(self, weights: NDArray[np.float64]) -> NDArray[np.float64]:
        """NDCG@k (m,) float64 of each user's fused list with member ``weights`` (J,) (ties by
        ascending item index, as serving ranks them)."""
        score = np.bincount(self.cell, weights=weights[self.member] * self.base,
                            minlength=self.row.size)  # fmt: skip
        ok = score > 0
        row, hit, score = self.row[ok], self.hit[ok], score[ok]
        # cells are sorted by (row, item): one stable sort by row, then descending score,
        # keeps ascending items among equal scores (a composite key: scores lie in (0, span))
        span = 2.0 * float(score.max()) if score.size else 1.0
        order = np.argsort(row * span - score, kind="stable")
        row, hit = row[order], hit[order]
        starts = np.searchsorted(row, row, side="left")
        rank = np.arange(row.size) - starts
        take = hit & (rank < self.k)
        dcg = np.bincount(row[take], weights=1.0 / np.log2(rank[take] + 2.0),
                          minlength=self.idcg.size)  # fmt: skip
        return np.asarray(dcg / self.idcg, dtype=np.float64)


def _search(
    lists: MemberLists, start: NDArray[np.float64], users: NDArray[np.int64]
) -> tuple[NDArray[np.float64], float]:
    """Coordinate ascent of the mean NDCG of ``users`` over ``GRID`` (some member other than
    ``popular`` keeps a weight): (weights, mean)."""
    scorers = np.array([n != TREND for n in lists.names])
    best = start.copy()
    best_value = float(lists.user_ndcg(best)[users].mean())
    for _ in range(MAX_PASSES):
        improved = False
        for j in range(best.size):
            for value in GRID:
                if value == best[j]:
                    continue
                trial = best.copy()
                trial[j] = value
                if not (trial[scorers] > 0).any():
                    continue
                got = float(lists.user_ndcg(trial)[users].mean())
                if got > best_value + 1e-9:
                    best, best_value, improved = trial, got, True
        if not improved:
            break
    return best, best_value


def learn_weights(
    models: Mapping[str, Scorer],
    users: NDArray[np.int64],
    user_items: sp.csr_matrix,
    targets: sp.csr_matrix,
    *,
    k: int = 20,
    seed: int = 0,
) -> dict[str, Any]:
    """Member weights of ``hybrid`` chosen on a holdout (see the module docstring).

    users (m,) int64, user_items (m, n_items), targets (m, n_items): the evaluated users, their
    training rows and test targets. Returns {"weights": the weights to serve (the searched ones
    when they beat the defaults out of sample, else the defaults), "source": "learned" |
    "default", "searched": the weights found on all users, "defaults", "ndcg@k": {"default",
    "searched_in_sample", "searched_cross_fitted"}, "users"}.
    """
    names = tuple(n for n in default_weights() if n in models)
    defaults = default_weights(set(names))
    if not any(n != TREND for n in names) or users.size < 4:
        return {"weights": defaults, "source": "default", "defaults": defaults,
                "users": int(users.size)}  # fmt: skip
    lists = MemberLists.build(models, names, users, user_items, targets, k)
    start = np.array([defaults[n] for n in names], dtype=np.float64)
    everyone = np.arange(users.size)
    halves = np.array_split(np.random.default_rng(seed).permutation(users.size), 2)
    out_of_fold = np.zeros(users.size, dtype=np.float64)
    for a, b in ((0, 1), (1, 0)):
        chosen, _ = _search(lists, start, halves[a])
        out_of_fold[halves[b]] = lists.user_ndcg(chosen)[halves[b]]
    searched, in_sample = _search(lists, start, everyone)
    default_ndcg = float(lists.user_ndcg(start).mean())
    cross = float(out_of_fold.mean())
    learned = cross > default_ndcg
    weights = {n: float(w) for n, w in zip(names, searched, strict=True)}
    return {
        "weights": weights if learned else defaults,
        "source": "learned" if learned else "default",
        "searched": weights,
        "defaults": defaults,
        f"ndcg@{k}": {
            "default": round(default_ndcg, 6),
            "searched_in_sample": round(in_sample, 6),
            "searched_cross_fitted": round(cross, 6),
        },
        "users": int(users.size),
    }
