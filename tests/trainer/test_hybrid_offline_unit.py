"""``hybrid`` is scored offline like every arm of ``auto``: the serving rank fusion of the
fitted members (``streamrec_trainer.models.hybrid``), with member weights searched on the
holdout and kept only when they beat the defaults out of sample."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from streamrec_dev import synthetic
from streamrec_shared.algorithms import REGISTRY
from streamrec_trainer.dataset import Dataset, Interactions, catalog_from_records
from streamrec_trainer.evaluate import evaluate, ndcg_per_user, temporal_holdout
from streamrec_trainer.models import AlsParams, TrainParams, fit_all
from streamrec_trainer.models.hybrid import (
    TRENDING_WEIGHT,
    FusionScorer,
    MemberLists,
    TrendingScorer,
    learn_weights,
)
from streamrec_trainer.models.topn import top_n_from_scores


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


class _PerUser:
    """A scorer with fixed scores per user row (users index the rows)."""

    def __init__(self, scores: np.ndarray, name: str) -> None:
        self.scores = scores.astype(np.float32)
        self.name = name

    def score(self, users: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return self.scores[users].copy()


def _members(m: int = 120, n_items: int = 150) -> tuple[dict, sp.csr_matrix, sp.csr_matrix]:
    """An ``als`` that ranks each user's targets near the top, an ``itemknn`` and a trending
    ``popular`` that are noise; one training item per user."""
    rng = np.random.default_rng(4)
    targets = np.zeros((m, n_items), dtype=np.float32)
    for u in range(m):
        targets[u, rng.choice(np.arange(1, n_items), size=3, replace=False)] = 1.0
    good = rng.random((m, n_items)) + 1.5 * targets * (rng.random((m, n_items)) < 0.7)
    models = {
        "als": _PerUser(good, "als"),
        "itemknn": _PerUser(rng.random((m, n_items)), "itemknn"),
        "popular": _PerUser(np.tile(rng.random(n_items), (m, 1)), "popular"),
    }
    seen = sp.csr_matrix((np.ones(m, np.float32), (np.arange(m), np.zeros(m, int))),
                         shape=(m, n_items))  # fmt: skip
    return models, seen, sp.csr_matrix(targets)


def test_member_lists_score_the_fusion_like_the_fusion_scorer() -> None:
    models, seen, targets = _members()
    users = np.arange(seen.shape[0])
    lists = MemberLists.build(models, ("als", "itemknn", "popular"), users, seen, targets, 20)
    for w in ([1.0, 0.8, 0.3], [0.0, 1.0, 2.0], [2.0, 0.0, 0.25]):
        fused = FusionScorer(tuple((models[n], x) for n, x in zip(("als", "itemknn", "popular"), w,
                                                                       strict=True)))  # fmt: skip
        top, _ = top_n_from_scores(fused.score(users, seen), 20, seen)
        np.testing.assert_allclose(lists.user_ndcg(np.asarray(w)), ndcg_per_user(top, targets, 20))


def test_weights_are_learned_when_they_beat_the_defaults_out_of_sample() -> None:
    models, seen, targets = _members()
    users = np.arange(seen.shape[0])
    found = learn_weights(models, users, seen, targets, k=20)
    assert found["source"] == "learned"
    assert found["defaults"] == {"als": 1.0, "itemknn": 0.8, "popular": TRENDING_WEIGHT}
    weights = found["weights"]
    assert weights["itemknn"] == 0.0
    assert weights["als"] > 0
    ndcg = found["ndcg@20"]
    assert ndcg["searched_cross_fitted"] > ndcg["default"]
    # every member noise: the search overfits its own users, which the cross-fit exposes, and
    # the defaults stay
    noise = {"als": models["itemknn"], "itemknn": _PerUser(np.random.default_rng(5).random(
        targets.shape), "itemknn"), "popular": models["popular"]}  # fmt: skip
    kept = learn_weights(noise, users, seen, targets, k=20)
    figures = kept["ndcg@20"]
    assert figures["searched_in_sample"] > figures["default"] > figures["searched_cross_fitted"]
    assert kept["source"] == "default"
    assert kept["weights"] == kept["defaults"]


def test_trending_is_the_decayed_event_weight_at_the_cutoff() -> None:
    day = 86_400.0
    interactions = Interactions.from_records([
        {"user_id": "u1", "product_id": "a", "event_type": "purchase", "timestamp": 10 * day},
        {"user_id": "u2", "product_id": "a", "event_type": "purchase", "timestamp": 10 * day},
        {"user_id": "u1", "product_id": "b", "event_type": "purchase", "timestamp": 12 * day},
        {"user_id": "u3", "product_id": "c", "event_type": "purchase", "timestamp": 13 * day},
    ])  # fmt: skip
    trend = TrendingScorer.at(interactions, np.asarray(["a", "b", "c", "d"]), 12 * day)
    # two purchases two half-lives old vs one now; c is after the cutoff, d never bought
    assert trend.item_scores[0] == pytest.approx(trend.item_scores[1] * 2 * 0.25)
    assert trend.item_scores[2] == 0.0
    assert trend.item_scores[3] == 0.0
    row = trend.score(np.asarray([0]), sp.csr_matrix((1, 4)))[0]
    assert row[1] > row[0]
    assert row[2] == row[3] == -np.inf
