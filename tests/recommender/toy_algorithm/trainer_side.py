"""A toy algorithm's trainer module, as a plug-in writes one: ``toy`` ranks items by how many
distinct users touched them. Registers its fitter, parameters, bundle arrays, offline adapter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from streamrec_trainer.models.registry import (
    Fitting,
    OfflineAdapter,
    OfflineContext,
    Params,
    TrainerAlgorithm,
    register,
)


@dataclass(frozen=True)
class ToyParams:
    bonus: float = 0.0


@dataclass(frozen=True)
class ToyModel:
    """scores (n_items,) float32: distinct users per item (+ bonus)."""

    scores: NDArray[np.float32]

    @property
    def name(self) -> str:
        return "toy"

    def score(self, users: NDArray[np.int64], user_items: sp.csr_matrix) -> NDArray[np.float32]:
        del user_items
        return np.broadcast_to(self.scores, (users.shape[0], self.scores.size)).copy()


def fit_toy(x: sp.csr_matrix, params: ToyParams) -> ToyModel:
    counts = np.diff(sp.csc_matrix(x).indptr).astype(np.float32)
    return ToyModel(counts + np.float32(params.bonus))


def _fit(fitting: Fitting, params: ToyParams) -> ToyModel:
    return fit_toy(fitting.x, params)


def _bundle(model: ToyModel, fitted: Any) -> dict[str, NDArray[Any]]:
    del fitted
    return {"scores": model.scores}


def _offline(ctx: OfflineContext, p: Params) -> ToyModel:
    return fit_toy(ctx.holdout.matrix(None).matrix, ToyParams(bonus=float(p["bonus"])))


register(
    TrainerAlgorithm(
        "toy", ToyParams, _fit, bundle=_bundle,
        offline={"toy": OfflineAdapter([{"bonus": 0.0}], _offline)},
    )
)  # fmt: skip
