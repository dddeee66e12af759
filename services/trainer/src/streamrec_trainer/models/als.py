"""Implicit-feedback ALS (Hu, Koren, Volinsky 2008) through the ``implicit`` library.

Confidence ``c_ui = 1 + alpha * w_ui`` (``streamrec_shared.factors.confidence``) is computed here
and handed to implicit with implicit's own ``alpha`` fixed at 1, so that the live fold-in in the
stream processor solves exactly the system the trainer solved. After training, every user factor
is recomputed with implicit's exact Cholesky solve against the final item factors (training
itself uses a 3-step conjugate-gradient approximation), so the stored user vectors equal a
fold-in of the same profile.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from numpy.typing import NDArray

from streamrec_shared.artifacts import AlsArrays
from streamrec_trainer.dataset import index_of
from streamrec_trainer.models import registry
from streamrec_trainer.models.base import FactorScores, as_csr32, single_threaded_blas

if TYPE_CHECKING:
    from streamrec_trainer.models.fit import FittedModels

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlsParams:
    """factors, regularization (lambda), alpha (confidence slope), iterations, random_state,
    num_threads (implicit's OpenMP threads; 0 = all cores)."""

    factors: int = 64
    regularization: float = 0.1
    alpha: float = 1.0
    iterations: int = 15
    random_state: int = 42
    num_threads: int = 2


@dataclass(frozen=True)
class AlsModel(FactorScores):
    """item_factors (n_items, f) float32, user_factors (n_users, f) float32 (rows as the
    training matrix), plus the regularization and alpha needed to fold users in."""

    regularization: float
    alpha: float

    @property
    def name(self) -> str:
        return "als"


def confidence_matrix(weights: sp.csr_matrix, alpha: float) -> sp.csr_matrix:
    """csr_matrix (n_users, n_items) float32 of ``1 + alpha * w`` on the stored cells."""
    conf = as_csr32(weights)
    conf.data = (1.0 + alpha * conf.data.astype(np.float64)).astype(np.float32)
    return conf


def fit_als(
    weights: sp.csr_matrix,
    params: AlsParams,
    *,
    init: AlsModel | None = None,
    iterations: int | None = None,
    exact_rows: NDArray[np.int64] | None = None,
) -> AlsModel:
    """Fit ALS on net decayed weights, csr_matrix (n_users, n_items) float32, values > 0.

    ``init`` warm-starts from a model whose factors are already aligned with these rows and
    columns (same shapes and rank), e.g. one fitted on an earlier part of the same window
    (``align_factors``); ``iterations`` then overrides ``params.iterations``. ``exact_rows``
    (m,) int64 limits the exact recomputation of user factors to those rows (the users that
    will be scored); the others keep their conjugate-gradient factors. None = every user.
    """
    conf = confidence_matrix(weights, params.alpha)
    n_users, n_items = conf.shape
    with single_threaded_blas():
        model = AlternatingLeastSquares(
            factors=params.factors,
            regularization=params.regularization,
            alpha=1.0,
            dtype=np.float32,
            iterations=params.iterations if iterations is None else iterations,
            calculate_training_loss=False,
            num_threads=params.num_threads,
            random_state=params.random_state,
        )
        if init is not None:
            expected = ((n_users, params.factors), (n_items, params.factors))
            if (init.user_factors.shape, init.item_factors.shape) != expected:
                raise ValueError("init factors do not match the matrix shape and factors")
            model.user_factors = np.array(init.user_factors, dtype=np.float32, order="C")
            model.item_factors = np.array(init.item_factors, dtype=np.float32, order="C")
        model.fit(conf, show_progress=False)
        if exact_rows is None:
            exact = model.recalculate_user(np.arange(n_users), conf)
            user_factors = np.asarray(exact, dtype=np.float32).reshape(n_users, -1)
        else:
            user_factors = np.array(model.user_factors, dtype=np.float32, order="C")
            rows = np.asarray(exact_rows, dtype=np.int64)
            if rows.size:
                exact = model.recalculate_user(rows, conf[rows])
                user_factors[rows] = np.asarray(exact, dtype=np.float32).reshape(rows.size, -1)
    logger.debug("fitted ALS %s on %s with %d cells", params, conf.shape, conf.nnz)
    return AlsModel(
        item_factors=np.ascontiguousarray(model.item_factors, dtype=np.float32),
        user_factors=user_factors,
        regularization=params.regularization,
        alpha=params.alpha,
    )


def align_factors(
    model: AlsModel,
    user_ids: NDArray[np.str_],
    item_ids: NDArray[np.str_],
    new_user_ids: NDArray[np.str_],
    new_item_ids: NDArray[np.str_],
    random_state: int,
) -> AlsModel:
    """``model``'s factors (rows labelled ``user_ids`` / ``item_ids``) re-indexed onto new
    labels for a warm start: known ids keep their factors, new ones get implicit's own random
    initialisation (uniform [0, 0.01)). Returns factors (n_new_users, f), (n_new_items, f)."""
    rng = np.random.default_rng(random_state)

    def align(
        factors: NDArray[np.float32], old: NDArray[np.str_], new: NDArray[np.str_]
    ) -> NDArray[np.float32]:
        pos = index_of(old, new)
        out = rng.random((new.size, factors.shape[1]), dtype=np.float32) * np.float32(0.01)
        known = pos >= 0
        out[known] = factors[pos[known]]
        return out

    return AlsModel(
        item_factors=align(model.item_factors, item_ids, new_item_ids),
        user_factors=align(model.user_factors, user_ids, new_user_ids),
        regularization=model.regularization,
        alpha=model.alpha,
    )


# --- registration (streamrec_trainer.models.registry) ------------------------------------------
def _fit(fitting: registry.Fitting, params: AlsParams) -> AlsModel:
    return fit_als(
        fitting.x_for("als"),
        params,
        init=fitting.init,
        iterations=fitting.iterations if fitting.init is not None else None,
        exact_rows=fitting.exact_rows,
    )


def _bundle(model: AlsModel, fitted: FittedModels) -> AlsArrays:
    m = fitted.matrix
    return AlsArrays(
        item_ids=m.item_ids,
        user_ids=m.user_ids,
        item_factors=model.item_factors,
        user_factors=model.user_factors,
        regularization=model.regularization,
        alpha=model.alpha,
    )


def offline_als(ctx: registry.OfflineContext, p: registry.Params) -> AlsModel:
    """ALS on the holdout's training part (cached per parameter point: content_to_als reads
    the chosen one again)."""

    def fit() -> AlsModel:
        x = ctx.train_matrix(p)
        params = AlsParams(
            factors=int(p["factors"]),
            regularization=float(p["regularization"]),
            alpha=float(p["alpha"]),
            num_threads=ctx.threads,
        )
        return fit_als(x, params)

    model: AlsModel = ctx.cached("als", p, fit)
    return model


registry.register(
    registry.TrainerAlgorithm(
        "als",
        AlsParams,
        _fit,
        bundle=_bundle,
        offline={
            "als": registry.OfflineAdapter(
                registry.grid(
                    half_life_days=[None, 90.0],
                    factors=[32, 64, 128],
                    regularization=[0.1, 1.0],
                    alpha=[0.05, 0.2, 1.0],
                ),
                offline_als,
                order=30,
            )
        },
    )
)
