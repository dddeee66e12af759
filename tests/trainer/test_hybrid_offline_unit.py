"""``hybrid`` is scored offline like every arm of ``auto``: the serving rank fusion of the
fitted members (``streamrec_trainer.models.hybrid``)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from streamrec_dev import synthetic
from streamrec_shared.algorithms import REGISTRY
from streamrec_trainer.dataset import Dataset, Interactions, catalog_from_records
from streamrec_trainer.evaluate import evaluate, temporal_holdout
from streamrec_trainer.models import AlsParams, TrainParams, fit_all
from streamrec_trainer.models.hybrid import TRENDING_WEIGHT, FusionScorer, TrendingScorer


def _dataset() -> Dataset:
    shop = synthetic.shop(n_users=120, n_products=200, events_per_user=25, seed=9)
    interactions = Interactions.from_records(shop.events)
    return Dataset(interactions, catalog_from_records(shop.products))


class _Fixed:
    """A scorer with the same scores for every user."""

    def __init__(self, scores: list[float], name: str) -> None:
        self.scores = np.asarray(scores, dtype=np.float32)
        self.name = name

    def score(self, users: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return np.tile(self.scores, (users.shape[0], 1))


def test_fusion_is_weighted_reciprocal_rank_without_the_users_items() -> None:
    a = _Fixed([4, 3, 2, 1], "a")
    b = _Fixed([1, 2, 3, 4], "b")
    seen = sp.csr_matrix(np.asarray([[1, 0, 0, 0]], dtype=np.float32))
    fused = FusionScorer(((a, 1.0), (b, 0.5)), depth=2).score(np.asarray([0]), seen)[0]
    # a ranks 1, 2 (0 is the user's own), b ranks 3, 2: item 2 is in both lists
    assert fused[0] == -np.inf
    assert fused[1] == np.float32(1.0 / 61)
    assert fused[2] == np.float32(1.0 / 62 + 0.5 / 62)
    assert fused[3] == np.float32(0.5 / 61)


def test_every_served_arm_is_scored_on_the_holdout() -> None:
    data = _dataset()
    holdout = temporal_holdout(data.interactions, test_fraction=0.2)
    train = Dataset(holdout.train, data.catalog)
    params = TrainParams(als=AlsParams(factors=16, iterations=5, num_threads=1))
    fitted = fit_all(train, params, reference_ts=holdout.cutoff, lists=False)
    scorers = fitted.scorers()
    assert set(REGISTRY.served) <= set(scorers)
    hybrid = scorers["hybrid"]
    assert isinstance(hybrid, FusionScorer)
    weights = {id(s): w for s, w in hybrid.members}
    # trending as it stood at the cutoff (what serving fuses), not the popular model
    assert isinstance(fitted.trending, TrendingScorer)
    assert weights[id(fitted.trending)] == TRENDING_WEIGHT
    for name, weight in REGISTRY.hybrid_members:
        assert weights[id(scorers[name])] == weight
    metrics = evaluate(hybrid, holdout)
    assert metrics["n_users"] == holdout.users.size > 0
    assert 0.0 < metrics["ndcg@20"] <= 1.0
