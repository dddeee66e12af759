"""Experiment assignment and the Thompson-sampling bandit."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from streamrec_recommender.serving import policy
from streamrec_recommender.serving.policy import (
    FLAT,
    ArmStats,
    Experiment,
    OfflineEvidence,
    ThompsonBandit,
    Variant,
    offline_priors,
)


def _exp(weights: tuple[float, float] = (0.7, 0.3), status: str = "running") -> Experiment:
    return Experiment(
        name="ranker",
        status=status,
        variants=(Variant("control", "als", weights[0]), Variant("treat", "itemknn", weights[1])),
    )


def test_assignment_is_deterministic_and_follows_weights() -> None:
    exp = _exp()
    users = [f"user-{i}" for i in range(20_000)]
    first = [exp.assign(u) for u in users]
    assert first == [exp.assign(u) for u in users]
    share = sum(1 for v in first if v is not None and v.name == "treat") / len(users)
    assert share == pytest.approx(0.3, abs=0.015)


def test_assignment_depends_on_experiment_name() -> None:
    a = _exp()
    b = Experiment("other", "running", a.variants)
    users = [f"user-{i}" for i in range(2000)]
    same = sum(1 for u in users if a.assign(u) == b.assign(u))
    assert same < 1800  # independent splits, not the same hash


def test_only_running_experiments_assign() -> None:
    assert policy.assign([_exp(status="draft")], "u1") is None
    got = policy.assign([_exp()], "u1")
    assert got is not None
    assert got[0].name == "ranker"


def test_validate_experiment_reports_problems() -> None:
    bad = Experiment("Bad Name", "on", (Variant("a", "magic", -1),))
    problems = policy.validate_experiment(bad)
    assert any(p.startswith("name") for p in problems)
    assert any(p.startswith("status") for p in problems)
    assert any(p.startswith("variants:") for p in problems)
    assert any("algorithm" in p for p in problems)
    assert policy.validate_experiment(_exp()) == []


def test_bandit_moves_traffic_to_the_better_arm() -> None:
    bandit = ThompsonBandit(["als", "itemknn", "content"])
    rng = np.random.default_rng(1)
    stats = {
        "als": ArmStats(impressions=2000, hits=100),
        "itemknn": ArmStats(impressions=2000, hits=300),
        "content": ArmStats(impressions=2000, hits=90),
    }
    picks = [bandit.choose(stats, rng) for _ in range(500)]
    assert picks.count("itemknn") > 480


def test_bandit_explores_without_data_and_respects_availability() -> None:
    bandit = ThompsonBandit(["als", "itemknn", "content"])
    rng = np.random.default_rng(2)
    picks = {bandit.choose({}, rng) for _ in range(200)}
    assert picks == {"als", "itemknn", "content"}
    only = {bandit.choose({}, rng, available=["content"]) for _ in range(20)}
    assert only == {"content"}


def test_win_probabilities_sum_to_one() -> None:
    bandit = ThompsonBandit(["a", "b"])
    probs = bandit.win_probabilities(
        {"a": ArmStats(100, 10), "b": ArmStats(100, 40)}, np.random.default_rng(0)
    )
    assert sum(probs.values()) == pytest.approx(1.0)
    assert probs["b"] > 0.99


# --- priors from the trainer's offline evaluation ---------------------------------------------

OFFLINE = {
    "algorithms": {
        "als": {"ndcg@20": 0.103},
        "itemknn": {"ndcg@20": 0.096},
        "content": {"ndcg@20": 0.076},
        "hybrid": {"ndcg@20": 0.110},
        "popular": {"ndcg@20": 0.042},
    }
}
ARMS = ("als", "itemknn", "content", "hybrid")


def test_offline_priors_rank_the_arms_as_the_holdout_did() -> None:
    evidence = OfflineEvidence.from_metrics(OFFLINE)
    priors = offline_priors(evidence, ARMS, {}, "heavy", strength=5000)
    means = {arm: p.mean for arm, p in priors.items()}
    assert sorted(means, key=lambda a: -means[a]) == ["hybrid", "als", "itemknn", "content"]
    assert priors["hybrid"].source == "offline:ndcg@20=0.1100"
    assert priors["als"].a + priors["als"].b == pytest.approx(5000)
    bandit = ThompsonBandit(ARMS)
    rng = np.random.default_rng(1)
    picks = Counter(bandit.choose({}, rng, priors=priors) for _ in range(2000))
    assert picks["hybrid"] > 0.8 * 2000
    assert picks["content"] == 0


def test_without_metrics_or_strength_the_priors_are_flat() -> None:
    for evidence, strength in ((OfflineEvidence.from_metrics(None), 5000.0),
                               (OfflineEvidence.from_metrics(OFFLINE), 0.0)):  # fmt: skip
        priors = offline_priors(evidence, ARMS, {}, "new", strength=strength)
        assert all(p is FLAT for p in priors.values())


def test_segment_figures_take_precedence() -> None:
    metrics = {**OFFLINE, "segments": {"light": {"itemknn": {"ndcg@20": 0.2},
                                                 "hybrid": {"ndcg@20": 0.1}}}}  # fmt: skip
    evidence = OfflineEvidence.from_metrics(metrics)
    light = offline_priors(evidence, ARMS, {}, "light")
    heavy = offline_priors(evidence, ARMS, {}, "heavy")
    assert light["itemknn"].mean > light["hybrid"].mean
    assert light["als"] is FLAT  # no light figure for als
    assert heavy["hybrid"].mean > heavy["itemknn"].mean


def test_impressions_without_any_hit_do_not_move_the_posterior() -> None:
    priors = offline_priors(OfflineEvidence.from_metrics(OFFLINE), ARMS, {}, "heavy")
    silent = {"hybrid": ArmStats(impressions=50_000), "als": ArmStats(impressions=10)}
    bandit = ThompsonBandit(ARMS)
    view = bandit.view(silent, np.random.default_rng(0), priors=priors)
    assert view["online_evidence_counted"] is False
    hybrid = view["arms"]["hybrid"]
    assert hybrid["posterior"]["mean"] == pytest.approx(hybrid["prior"]["mean"])
    assert hybrid["online"] == {"impressions": 50_000, "hits": 0}
    assert hybrid["p_best"] > 0.8


def test_online_hits_overturn_the_offline_ranking() -> None:
    stats = {"hybrid": ArmStats(impressions=20_000, hits=200),
             "content": ArmStats(impressions=20_000, hits=2_000)}  # fmt: skip
    priors = offline_priors(OfflineEvidence.from_metrics(OFFLINE), ARMS, stats, "heavy")
    # on the online scale: pooled hit rate shrunk towards the best offline figure
    assert priors["hybrid"].mean < OFFLINE["algorithms"]["hybrid"]["ndcg@20"]
    bandit = ThompsonBandit(ARMS)
    view = bandit.view(stats, np.random.default_rng(0), priors=priors)
    assert view["online_evidence_counted"] is True
    assert view["arms"]["content"]["p_best"] > 0.95
    rng = np.random.default_rng(2)
    picks = Counter(bandit.choose(stats, rng, priors=priors) for _ in range(500))
    assert picks["content"] > 450


def _z_share(metrics: dict[str, object], draws: int = 4000) -> float:
    """Share of Thompson draws that pick ``als`` over ``hybrid`` (``p_best``: what the bandit
    draws once the segment has feedback)."""
    priors = offline_priors(OfflineEvidence.from_metrics(metrics), ("als", "hybrid"), {}, "heavy")
    bandit = ThompsonBandit(("als", "hybrid"))
    rng = np.random.default_rng(2)
    return bandit.win_probabilities({}, rng, draws=draws, priors=priors)["als"]


@pytest.mark.parametrize(("se", "expected"), [(0.0035, 0.023), (0.014, 0.309)])
def test_prior_strength_follows_the_holdouts_paired_standard_error(
    se: float, expected: float
) -> None:
    # hybrid 0.110 vs als 0.103 on the same users, the difference known to +-se: Thompson
    # sampling draws als about as often as the holdout leaves it possibly better (P(z < -d/se))
    metrics = {
        "algorithms": {"als": {"ndcg@20": 0.103}, "hybrid": {"ndcg@20": 0.110}},
        "paired_se": {"ndcg@20": {"als": se, "hybrid": 0.0}},
    }
    assert _z_share(metrics) == pytest.approx(expected, abs=0.02)
    priors = offline_priors(OfflineEvidence.from_metrics(metrics), ARMS, {}, "heavy")
    assert priors["hybrid"].source == f"offline:ndcg@20=0.1100 se={0.0:.4f}"
    assert priors["itemknn"] is FLAT  # no figure


def test_segment_standard_errors_are_read() -> None:
    metrics = {
        **OFFLINE,
        "segments": {"new": {"sknn": {"ndcg@20": 0.07, "ndcg@20_paired_se": 0.0},
                             "hybrid": {"ndcg@20": 0.06, "ndcg@20_paired_se": 0.01}}},
    }  # fmt: skip
    evidence = OfflineEvidence.from_metrics(metrics)
    assert evidence.se_by_segment["new"] == {"sknn": 0.0, "hybrid": 0.01}
    assert evidence.se == {}  # no overall standard errors: the fixed strength applies
    new = offline_priors(evidence, ("hybrid", "sknn"), {}, "new")
    assert new["sknn"].mean > new["hybrid"].mean
    assert new["sknn"].source == "offline:new:ndcg@20=0.0700 se=0.0000"
    fixed = offline_priors(evidence, ARMS, {}, "heavy", strength=5000)
    assert fixed["als"].a + fixed["als"].b == pytest.approx(5000)


def test_before_the_first_hit_the_leader_serves_and_exploration_waits() -> None:
    # als could be the better arm (holdout: 0.007 below hybrid, +-0.014), but until the segment
    # has a hit a draw of als could not be learned from: hybrid answers every request
    metrics = {
        "algorithms": {"als": {"ndcg@20": 0.103}, "hybrid": {"ndcg@20": 0.110}},
        "paired_se": {"ndcg@20": {"als": 0.014, "hybrid": 0.0}},
    }
    arms = ("als", "itemknn", "hybrid")  # itemknn: no offline figure (flat prior)
    bandit = ThompsonBandit(arms)
    rng = np.random.default_rng(3)
    no_hit = {"hybrid": ArmStats(impressions=500, hits=0), "als": ArmStats(impressions=50)}
    priors = offline_priors(OfflineEvidence.from_metrics(metrics), arms, no_hit, "heavy")
    assert {bandit.choose(no_hit, rng, priors=priors) for _ in range(300)} == {"hybrid"}
    assert bandit.view(no_hit, rng, priors=priors)["serves"] == "best_prior"
    # the view still shows what Thompson sampling would draw (P(z < -0.007 / 0.014) ~ 0.31)
    pair = ThompsonBandit(("als", "hybrid"))
    view = pair.view(no_hit, rng, priors=priors)
    assert view["arms"]["als"]["p_best"] == pytest.approx(0.31, abs=0.05)
    # hits: Thompson sampling explores, als included
    hit = {"hybrid": ArmStats(impressions=1000, hits=110), "als": ArmStats(1000, hits=103)}
    priors = offline_priors(OfflineEvidence.from_metrics(metrics), arms, hit, "heavy")
    picks = Counter(pair.choose(hit, rng, priors=priors) for _ in range(300))
    assert picks["als"] > 10, picks
    assert picks["hybrid"] > 10, picks
    assert pair.view(hit, rng, priors=priors)["serves"] == "thompson"
