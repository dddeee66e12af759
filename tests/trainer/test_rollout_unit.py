"""The rollout decision from online counters."""

from __future__ import annotations

from streamrec_trainer.rollout import compare, experiment_name


def _counts(imp_c: int, hit_c: int, imp_a: int, hit_a: int) -> dict[str, dict[str, int]]:
    return {"canary": {"imp": imp_c, "hit": hit_c}, "control": {"imp": imp_a, "hit": hit_a}}


def test_too_few_impressions_wait() -> None:
    out = compare(_counts(50, 40, 500, 10), min_impressions=100, z_crit=1.645)
    assert out["verdict"] == "wait"
    assert out["z"] is None
    assert out["canary"]["hit_rate"] == 0.8


def test_a_worse_canary_is_rolled_back_and_an_equal_or_better_one_promoted() -> None:
    worse = compare(_counts(1000, 50, 9000, 900), min_impressions=500, z_crit=1.645)
    assert worse["verdict"] == "roll_back"
    assert worse["z"] < -1.645
    same = compare(_counts(1000, 98, 9000, 900), min_impressions=500, z_crit=1.645)
    assert same["verdict"] == "promote"
    better = compare(_counts(1000, 200, 9000, 900), min_impressions=500, z_crit=1.645)
    assert better["verdict"] == "promote"
    assert better["z"] > 1.645


def test_rollout_experiment_name() -> None:
    assert experiment_name(7) == "rollout7"
