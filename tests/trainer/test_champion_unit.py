"""Champion/challenger on one split: the active version ranked through its own artifacts on the
candidate's holdout, and the gate's decisions (no services needed)."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec_trainer.champion import evaluate_bundle
from streamrec_trainer.dataset import Catalog, Dataset, Interactions
from streamrec_trainer.evaluate import temporal_holdout
from streamrec_trainer.models.als import AlsParams
from streamrec_trainer.models.fit import TrainParams, fit_all
from streamrec_trainer.pipeline import evaluate_fitted, gate
from streamrec_trainer.settings import TrainingSettings

from .logs import clustered_log

PARAMS = TrainParams(als=AlsParams(factors=4, iterations=10, num_threads=1), topn_n=5)


def test_the_same_model_as_champion_scores_the_same_on_the_split() -> None:
    log = clustered_log(3)
    holdout = temporal_holdout(log, test_fraction=0.2)
    # the champion is exactly the model the candidate evaluation fits (same data, same seed)
    same = fit_all(Dataset(holdout.train, Catalog.empty()), PARAMS, reference_ts=holdout.cutoff)
    offline, _ = evaluate_fitted(
        Dataset(log, Catalog.empty()), PARAMS, 0.2, champion=same.to_bundle(1)
    )
    champ = offline["champion"]["algorithms"]
    assert set(champ) >= {"als", "itemknn", "popular"}
    for k in (5, 10, 20):
        assert champ["als"][f"hr@{k}"] == pytest.approx(
            offline["algorithms"]["als"][f"hr@{k}"], abs=0.05
        )
        assert champ["popular"][f"ndcg@{k}"] == pytest.approx(
            offline["algorithms"]["popular"][f"ndcg@{k}"], abs=1e-6
        )
    assert offline["algorithms"]["als"]["hr@10"] > 0.5
    assert offline["champion"]["items_known"] == 1.0


def test_items_the_champion_does_not_know_are_misses() -> None:
    log = clustered_log(4)
    holdout = temporal_holdout(log, test_fraction=0.2)
    keep = ~np.isin(log.item_ids, [f"i{k:02d}" for k in range(0, 8)])
    old = Interactions(
        log.user_ids[keep], log.item_ids[keep], log.event_types[keep], log.values[keep],
        log.timestamps[keep],
    )  # fmt: skip
    champion = fit_all(Dataset(old, Catalog.empty()), PARAMS).to_bundle(7)
    result = evaluate_bundle(champion, holdout, ["als", "popular"], half_life_days=None)
    assert result["version"] == 7
    assert result["items_known"] < 1.0
    # the users of group 0 can only be hit with items 8..14: fewer hits than a full model
    full = fit_all(Dataset(holdout.train, Catalog.empty()), PARAMS, reference_ts=holdout.cutoff)
    complete = evaluate_bundle(full.to_bundle(8), holdout, ["als"], half_life_days=None)
    assert result["algorithms"]["als"]["recall@20"] < complete["algorithms"]["als"]["recall@20"]
    assert result["overlap_s"] > 0  # the champion saw the candidate's test period


def _offline(candidate: float, champion: float | None, users: int = 100) -> dict[str, object]:
    algos = {"als": {"ndcg@20": candidate, "hr@20": 0.5}}
    champ = {} if champion is None else {"als": {"ndcg@20": champion, "hr@20": 0.5}}
    return {
        "holdout": {"n_evaluated_users": users},
        "algorithms": algos,
        "champion": {"version": 1, "algorithms": champ},
    }


def test_gate_decisions() -> None:
    settings = TrainingSettings(gate_tolerance=0.05, gate_min_users=20, gate_data_growth=0.1)
    ok, why, ev = gate(_offline(0.2, None), settings, active_version=None, n_interactions=10)
    assert ok
    assert ev["decision"] == "no_champion"
    ok, why, ev = gate(_offline(0.2, 0.205), settings, active_version=1, n_interactions=10)
    assert ok
    assert ev["decision"] == "not_worse"
    assert ev["candidate"] == 0.2
    assert ev["champion"] == 0.205
    assert ev["comparison"]["als"]["champion"]["hr@20"] == 0.5
    ok, why, ev = gate(_offline(0.1, 0.2), settings, active_version=1, n_interactions=10)
    assert not ok
    assert ev["decision"] == "worse"
    assert "same holdout" in why


@pytest.mark.parametrize(
    ("candidate", "n_interactions", "published", "words"),
    [(0.1, 1150, True, "grew materially"), (0.3, 1050, False, "insufficient evidence")],
)
def test_with_too_few_users_the_data_growth_decides(
    candidate: float, n_interactions: int, published: bool, words: str
) -> None:
    settings = TrainingSettings(gate_tolerance=0.05, gate_min_users=20, gate_data_growth=0.1)
    ok, why, ev = gate(
        _offline(candidate, 0.2, users=5), settings, active_version=1,
        n_interactions=n_interactions, active_interactions=1000,
    )  # fmt: skip
    assert ok is published
    assert ev["decision"] == "insufficient_evidence"
    assert words in why


def test_a_difference_the_holdout_cannot_tell_from_noise_does_not_reject() -> None:
    settings = TrainingSettings(gate_tolerance=0.05, gate_min_users=20)
    noisy = _offline(0.15, 0.17)
    noisy["champion"]["paired"] = {"z": -0.8}  # type: ignore[index]
    ok, why, ev = gate(noisy, settings, active_version=1, n_interactions=10)
    assert ok
    assert ev["decision"] == "not_worse"
    assert "paired z=-0.80" in why
    clear = _offline(0.15, 0.17)
    clear["champion"]["paired"] = {"z": -3.0}  # type: ignore[index]
    ok, _, ev = gate(clear, settings, active_version=1, n_interactions=10)
    assert not ok
    assert ev["decision"] == "worse"


def test_the_paired_test_compares_the_same_users() -> None:
    log = clustered_log(5)
    holdout = temporal_holdout(log, test_fraction=0.2)
    same = fit_all(Dataset(holdout.train, Catalog.empty()), PARAMS, reference_ts=holdout.cutoff)
    offline, _ = evaluate_fitted(
        Dataset(log, Catalog.empty()), PARAMS, 0.2, champion=same.to_bundle(1), paired=("als", 20)
    )
    paired = offline["champion"]["paired"]
    assert paired["users"] == offline["holdout"]["n_evaluated_users"]
    assert abs(paired["z"]) < 1.645  # the same model: no significant difference
