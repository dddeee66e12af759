"""Experiment assignment and the Thompson-sampling bandit."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec_recommender.serving import policy
from streamrec_recommender.serving.policy import ArmStats, Experiment, ThompsonBandit, Variant


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
