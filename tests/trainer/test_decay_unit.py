"""The training half-life chosen on the holdout (``streamrec_trainer.decay``): a shop whose
co-purchases changed gets a short one for item-kNN, the choice reaches the final fit and the
version's params, and a choice the holdout cannot back keeps the default."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from streamrec_trainer.dataset import Catalog, Dataset, Interactions, build_matrix
from streamrec_trainer.decay import choose_half_lives, label, paired_z
from streamrec_trainer.evaluate import temporal_holdout
from streamrec_trainer.models.als import AlsParams
from streamrec_trainer.models.fit import TrainParams, fit_all
from streamrec_trainer.models.registry import Fitting
from streamrec_trainer.pipeline import evaluate_fitted, fit_window
from streamrec_trainer.settings import TrainingSettings

from .logs import DAY, T0

PARAMS = TrainParams(
    half_life_days=90.0, als=AlsParams(factors=4, iterations=5, num_threads=1), topn_n=5
)
GRID = [7.0, 90.0, None]
PAIRS = 10


def old_partner(i: int) -> int:
    """What item ``i`` was bought with for most of the log: (0, 1), (2, 3), ..."""
    return i ^ 1


def new_partner(i: int) -> int:
    """What item ``i`` is bought with lately: (1, 2), (3, 4), ..., (19, 0)."""
    n = 2 * PAIRS
    return (i + 1) % n if i % 2 else (i - 1) % n


def drifting_log() -> Interactions:
    """Pairs of purchases: days 150-300 many buyers of the old pairs, days 330-350 a few of the
    new pairs, buyers of one item at day 350 who buy its new partner at day 395 (after the
    cutoff of the last 10% of the span: the holdout)."""
    rng = np.random.default_rng(0)
    rows: list[tuple[str, str, float]] = []
    n = 2 * PAIRS
    for i in range(0, n, 2):
        for u in range(100):
            t = float(rng.uniform(150, 300))
            rows += [(f"old{i}-{u}", f"i{i:02d}", t), (f"old{i}-{u}", f"i{i + 1:02d}", t)]
    for i in range(1, n, 2):
        for u in range(10):
            t = float(rng.uniform(330, 350))
            user = f"new{i}-{u}"
            rows += [(user, f"i{i:02d}", t), (user, f"i{new_partner(i):02d}", t)]
    for u in range(40):  # most buyers of the holdout follow the new pairs, some buy anything
        i = int(rng.integers(0, n))
        then = new_partner(i) if u % 4 else int(rng.integers(0, n))
        rows += [(f"test{u}", f"i{i:02d}", 350.0), (f"test{u}", f"i{then:02d}", 395.0)]
    users, items, days = (np.asarray(col) for col in zip(*rows, strict=True))
    m = users.size
    return Interactions(
        users, items, np.full(m, "purchase"), np.full(m, np.nan), T0 + days.astype(float) * DAY
    )


def top_neighbour(fitted_knn: object, item: int) -> int:
    items, _ = fitted_knn.neighbours(1)  # type: ignore[attr-defined]
    return int(items[item, 0])


def test_a_shop_whose_pairs_changed_gets_a_short_half_life_for_itemknn() -> None:
    log = drifting_log()
    holdout = temporal_holdout(log, test_fraction=0.1)
    fitted = fit_all(
        Dataset(holdout.train, Catalog.empty()), PARAMS, reference_ts=holdout.cutoff, lists=False
    )
    assert top_neighbour(fitted.models["itemknn"], 1) == old_partner(1)  # 90 d: the old pairs
    chosen, report = choose_half_lives(
        fitted,
        Dataset(holdout.train, Catalog.empty()),
        holdout,
        ["itemknn"],
        GRID,
        scoring_half_life=PARAMS.half_life_days,
    )
    evidence = report["itemknn"]
    assert evidence["chosen"] == 7.0
    assert evidence["default"] == 90.0
    figures = evidence["ndcg@20"]
    assert set(figures) == {"7", "90", "none"}
    assert figures["7"] > max(figures["90"], figures["none"])
    assert evidence["z"] >= 1.645
    assert evidence["users"] <= 40
    assert chosen.params.half_lives == {"itemknn": 7.0}
    assert top_neighbour(chosen.models["itemknn"], 1) == new_partner(1)
    # the other algorithms are the same objects: only item-kNN was fitted again
    for name, model in fitted.models.items():
        if name != "itemknn":
            assert chosen.models[name] is model


def test_a_gain_the_holdout_cannot_back_keeps_the_default() -> None:
    log = drifting_log()
    holdout = temporal_holdout(log, test_fraction=0.1)
    train = Dataset(holdout.train, Catalog.empty())
    fitted = fit_all(train, PARAMS, reference_ts=holdout.cutoff, lists=False)
    chosen, report = choose_half_lives(
        fitted, train, holdout, ["itemknn"], GRID, scoring_half_life=90.0, z_min=1e6
    )
    assert report["itemknn"]["chosen"] == 90.0
    assert report["itemknn"]["ndcg@20"]["7"] > report["itemknn"]["ndcg@20"]["90"]
    assert chosen.params.half_lives == {}
    assert chosen.models["itemknn"] is fitted.models["itemknn"]


def test_the_choice_reaches_the_final_fit_and_the_version_params() -> None:
    dataset = Dataset(drifting_log(), Catalog.empty())
    settings = TrainingSettings()
    offline, evaluated = evaluate_fitted(
        dataset,
        PARAMS,
        0.1,
        half_life_algorithms=settings.half_life_algorithms,
        half_life_grid=settings.half_life_grid,
        half_life_z=settings.half_life_z,
    )
    assert evaluated is not None
    chosen = offline["half_lives"]["itemknn"]["chosen"]
    assert chosen is not None
    assert chosen < 90.0
    assert {"90", "none"} <= set(offline["half_lives"]["itemknn"]["ndcg@20"])
    assert evaluated.params.half_lives == {"itemknn": chosen}
    final = fit_window(dataset, evaluated.params, evaluated, refit_iterations=2)
    assert top_neighbour(final.models["itemknn"], 1) == new_partner(1)
    bundle = final.to_bundle(1)
    assert bundle.params["half_lives"] == {"itemknn": chosen}
    assert TrainParams.from_dict(bundle.params).half_lives == {"itemknn": chosen}
    # turned off: no choice, the default for every algorithm
    off, plain = evaluate_fitted(dataset, PARAMS, 0.1, half_life_algorithms=[])
    assert "half_lives" not in off
    assert plain is not None
    assert plain.params.half_lives == {}


def test_fitting_decays_an_algorithms_matrix_with_its_own_half_life() -> None:
    log = drifting_log()
    matrix = build_matrix(log, half_life_days=90.0)
    params = TrainParams(half_life_days=90.0, half_lives={"itemknn": None, "als": 90.0})
    fitting = Fitting(Dataset(log, Catalog.empty()), matrix, params)
    assert fitting.x_for("als") is fitting.x
    assert fitting.x_for("ease") is fitting.x
    undecayed = fitting.x_for("itemknn")
    assert undecayed is fitting.x_for("itemknn")  # built once
    assert undecayed.shape == fitting.x.shape
    expected = build_matrix(log, half_life_days=None).matrix
    np.testing.assert_allclose(undecayed.toarray(), expected.toarray(), rtol=1e-6)


def test_paired_z_and_labels() -> None:
    assert paired_z(np.array([1.0, 0.0, 1.0, 1.0]), np.array([0.0, 0.0, 1.0, 0.0])) == (
        pytest.approx(0.5 / (np.std([1, 0, 0, 1], ddof=1) / 2))
    )
    assert paired_z(np.ones(3), np.zeros(3)) == math.inf
    assert paired_z(np.ones(3), np.ones(3)) == 0.0
    assert paired_z(np.ones(1), np.zeros(1)) == 0.0
    assert [label(h) for h in (7.0, 7.5, None)] == ["7", "7.5", "none"]


def test_settings_name_a_bad_half_life_grid() -> None:
    assert TrainingSettings().half_life_grid[-1] is None
    assert 90.0 in TrainingSettings().half_life_grid
    with pytest.raises(ValidationError, match="half_life_grid"):
        TrainingSettings(half_life_grid=[30.0, 0.0])
