"""The training half-life as a learned setting: per retrain, for each algorithm named in the
settings (``half_life_algorithms``, default item-kNN), the half-life its training weights are
decayed with is chosen on the trainer's holdout from a small grid (``half_life_grid``).

Why: how fast what the shop's customers buy together goes stale is a property of the shop
(seasonal ranges, fashion, staples), not a constant. On the Online Retail protocol (trainer's
holdout = last 10% of the protocol's training period, 764 users; the protocol's 1,810 test
users), item-kNN's NDCG@20 by training half-life, users' histories decayed 90 days as the
trainer scores them: 7 d 0.093 / 0.103, 14 d 0.107 / 0.115, 21 d 0.111 / 0.116, 30 d 0.111 /
0.113, 60 d 0.103 / 0.101, 90 d (the default) 0.096 / 0.096, 180 d 0.090 / 0.092, 365 d
0.086 / 0.088, no decay 0.081 / 0.084 (holdout / test). ALS moved within 0.101-0.105 on the
holdout over the same grid (each candidate a full ALS fit), EASE fits binary interactions
(no effect): neither is in the default list.

Only the fitted model changes (item-kNN's similarities, hence its neighbour lists, the
similar-products lists and ``hybrid``'s item-kNN member): the users' histories are scored as
before (serving reads the live profile's weights, which the training half-life does not
touch), so what the holdout measured is what serving computes.

The rule: every candidate is fitted on the holdout's training part (the same events, rows and
columns, decayed with the candidate) and scored on the holdout users; the best by mean NDCG@K
replaces the default ``half_life_days`` only when its per-user gain over the default is sure:
mean difference over its paired standard error >= ``half_life_z`` (1.645: one-sided 5%; the
pick of the best of the grid is not corrected for, so the bar is a floor, not a test).
Algorithms fitted after a re-fitted one (``TrainerAlgorithm.after``) are re-fitted with it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from streamrec_trainer.dataset import Dataset
from streamrec_trainer.evaluate import Holdout, evaluate_users, paired_difference
from streamrec_trainer.models.fit import FittedModels
from streamrec_trainer.models.registry import Fitting, trained


def label(half_life: float | None) -> str:
    """A half-life as a JSON key: ``"30"``, ``"7.5"``, ``"none"``."""
    return "none" if half_life is None else f"{half_life:g}"


def paired_z(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    """Mean of ``a - b`` (per user, same users) over its standard error: 0 with fewer than two
    users; +-inf when every user gains (loses) exactly the same, 0 when none does."""
    d, mean, se = paired_difference(a, b)
    if d.size < 2:
        return 0.0
    if se > 0:
        return mean / se
    return math.copysign(math.inf, mean) if mean != 0 else 0.0


def choose_half_lives(
    fitted: FittedModels,
    dataset: Dataset,
    holdout: Holdout,
    algorithms: Sequence[str],
    grid: Sequence[float | None],
    *,
    scoring_half_life: float | None,
    k: int = 20,
    z_min: float = 1.645,
) -> tuple[FittedModels, dict[str, Any]]:
    """Choose each named algorithm's training half-life on ``holdout`` from ``grid`` (days,
    None = no decay; the default ``fitted.params.half_life_days`` is always a candidate).

    ``fitted``: every algorithm fitted on ``dataset`` (the holdout's training part) with
    ``fitted.params``; ``scoring_half_life``: how the users' histories are decayed when scored
    (as the holdout evaluation scores them). Algorithms not fitted (not in ``fitted.models``)
    are skipped.

    Returns (the models with each chosen half-life's fit in place of the default's and
    ``params.half_lives`` set where it is not the default; per algorithm the evidence:
    ``{"chosen", "default", "ndcg@K": {candidate: mean}, "z", "users"}``).
    """
    params = fitted.params
    default = params.half_life_days
    models: dict[str, Any] = dict(fitted.models)
    half_lives: dict[str, float | None] = dict(params.half_lives)
    report: dict[str, Any] = {}
    metric = f"ndcg@{k}"
    order = [a for a in trained() if a.name in models]
    for name in algorithms:
        if name not in models:
            continue
        base_hl = half_lives.get(name, default)
        base = evaluate_users(models[name], holdout, half_life_days=scoring_half_life, k=k)[1]
        per_user: dict[float | None, NDArray[np.float64]] = {base_hl: base}
        algorithm = next(a for a in order if a.name == name)
        # only the best fit so far is kept (a catalogue's worth of neighbour lists each)
        best, best_model = base_hl, models[name]
        for candidate in grid:
            if candidate in per_user:
                continue
            trial = dataclasses.replace(params, half_lives={**half_lives, name: candidate})
            fitting = Fitting(dataset, fitted.matrix, trial, models=dict(models))
            model = algorithm.fit(fitting, trial.params_for(name))
            if model is None:
                continue
            per_user[candidate] = evaluate_users(
                model, holdout, half_life_days=scoring_half_life, k=k
            )[1]
            if float(per_user[candidate].mean()) > float(per_user[best].mean()):
                best, best_model = candidate, model
        z = paired_z(per_user[best], base)
        chosen = best if best != base_hl and z >= z_min else base_hl
        report[name] = {
            "chosen": chosen,
            "default": base_hl,
            metric: {label(hl): round(float(v.mean()), 4) for hl, v in per_user.items()},
            "z": round(z, 2) if math.isfinite(z) else None,  # None: the same gain for all
            "users": int(base.size),
        }
        if chosen == base_hl:
            continue
        half_lives[name] = chosen
        models[name] = best_model
        # what was fitted from the replaced model is fitted again from the chosen one
        trial = dataclasses.replace(params, half_lives=dict(half_lives))
        stale = {name}
        for algorithm in order:
            if stale.intersection(algorithm.after):
                fitting = Fitting(dataset, fitted.matrix, trial, models=dict(models))
                refit = algorithm.fit(fitting, trial.params_for(algorithm.name))
                if refit is not None:
                    models[algorithm.name] = refit
                    stale.add(algorithm.name)
    params = dataclasses.replace(params, half_lives=half_lives)
    return dataclasses.replace(fitted, params=params, models=models), report
