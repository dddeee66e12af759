"""``hybrid`` offline: the serving rank fusion of the fitted members, as a ``Scorer``.

``hybrid`` is not trained (``streamrec_shared.algorithms``: it combines the others), but the
recommender serves it and its ``auto`` policy starts from the offline figures of every arm, so
the holdout evaluation scores it too: the same weighted reciprocal-rank fusion as
``streamrec_recommender.serving.algorithms.hybrid`` over each member's top ``depth`` (the
user's own items never take a rank, as the serving filter removes them before candidates are
cut), plus ``popular`` at ``TRENDING_WEIGHT``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from streamrec_shared.algorithms import REGISTRY
from streamrec_trainer.models.base import Scorer
from streamrec_trainer.models.topn import top_n_from_scores

TRENDING_WEIGHT = 0.3
"""As ``serving.algorithms.hybrid.TRENDING_WEIGHT`` (live trending there, popularity here)."""
DEPTH = 100
"""Candidates per member, as the recommender reads for a top-20 (``Engine.candidates``)."""
K0 = 60.0


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
            s = np.array(scorer.score(users, user_items), dtype=np.float32, copy=True)
            top, _ = top_n_from_scores(s, self.depth, seen)
            rows, ranks = np.nonzero(top >= 0)
            np.add.at(fused, (rows, top[rows, ranks]), weight / (K0 + ranks + 1.0))
        fused[fused <= 0] = -np.inf
        return fused


def fusion(models: Mapping[str, Scorer]) -> FusionScorer | None:
    """The hybrid scorer over the fitted ``models`` (None when no member was fitted)."""
    members = [(models[n], w) for n, w in REGISTRY.hybrid_members if n in models]
    if not members:
        return None
    if "popular" in models:
        members.append((models["popular"], TRENDING_WEIGHT))
    return FusionScorer(tuple(members))
