"""``fit_all``: every trained algorithm on one dataset, and the conversion to a ``ModelBundle``.

Which algorithms, in which order, and what each ships come from the registries
(``streamrec_shared.algorithms``, ``models.registry``): nothing here lists them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from streamrec_shared.algorithms import REGISTRY
from streamrec_shared.artifacts import DataWindow, ModelBundle, TopNArrays
from streamrec_trainer.dataset import (
    Dataset,
    InteractionMatrix,
    build_matrix,
    index_of,
    recent_users,
)
from streamrec_trainer.models.als import AlsModel, AlsParams, align_factors
from streamrec_trainer.models.base import Scorer
from streamrec_trainer.models.content import ContentParams
from streamrec_trainer.models.ease import EaseParams
from streamrec_trainer.models.hybrid import TREND, TrendingScorer, fusion
from streamrec_trainer.models.itemknn import ItemKnnModel, ItemKnnParams
from streamrec_trainer.models.popular import PopularParams
from streamrec_trainer.models.registry import TRAINERS, Fitting, load_builtin, trained
from streamrec_trainer.models.topn import top_n, top_n_from_scores

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainParams:
    """Everything ``fit_all`` needs. ``half_life_days`` decays event weights relative to the end
    of the data window (None = no decay); ``half_lives`` gives an algorithm (by name) a training
    half-life of its own (chosen on the holdout: ``streamrec_trainer.decay``; the users'
    histories it scores are decayed as before). ``ease`` None skips EASE (it skips itself when the
    catalogue exceeds its ``max_items``).
    ``topn_algorithm`` names the fitted algorithm whose lists go into topn.npz (e.g. "als")
    for users active within ``topn_active_days`` of the window end."""

    half_life_days: float | None = None
    half_lives: Mapping[str, float | None] = field(default_factory=dict)
    als: AlsParams = field(default_factory=AlsParams)
    itemknn: ItemKnnParams = field(default_factory=ItemKnnParams)
    content: ContentParams = field(default_factory=ContentParams)
    popular: PopularParams = field(default_factory=PopularParams)
    ease: EaseParams | None = field(default_factory=EaseParams)
    similar_n: int = 50
    topn_n: int = 100
    topn_algorithm: str = "als"
    topn_active_days: float = 30.0
    topn_max_users: int = 100_000
    plugins: Mapping[str, Any] = field(default_factory=dict)
    """Parameters of registered algorithms without a field here, by name (default: their
    parameter class's defaults; None skips one)."""

    def params_for(self, name: str) -> Any:
        """The parameters of algorithm ``name`` (None: do not fit it)."""
        if name in self.__dataclass_fields__:  # a built-in algorithm's group
            return getattr(self, name)
        if name in self.plugins:
            return self.plugins[name]
        return TRAINERS[name].params()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (stored as the manifest's ``params``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainParams:
        """Inverse of ``to_dict``; missing keys keep their defaults."""
        load_builtin()
        kwargs: dict[str, Any] = {}
        plugins: dict[str, Any] = {}
        for key, value in data.items():
            if key == "plugins":
                for name, group in (value or {}).items():
                    known = TRAINERS.get(name)
                    plugins[name] = known.params(**group) if known and group is not None else group
            elif key in TRAINERS and value is not None:
                kwargs[key] = TRAINERS[key].params(**value)
            else:
                kwargs[key] = value
        return cls(**kwargs, plugins=plugins)


@dataclass(frozen=True)
class FittedModels:
    """Output of ``fit_all``; ``to_bundle`` turns it into the artifact. ``models``: every
    fitted algorithm by name, in fitting order (each a ``Scorer``)."""

    params: TrainParams
    matrix: InteractionMatrix
    window: DataWindow
    models: Mapping[str, Any]
    similar_items: NDArray[np.int32]
    similar_scores: NDArray[np.float32]
    topn_users: NDArray[np.int64]
    topn_items: NDArray[np.int32]
    topn_scores: NDArray[np.float32]
    trending: Scorer | None = None
    """Live trending as it stood at the end of the data (``models.hybrid.TrendingScorer``):
    ``hybrid``'s trend member, as serving fuses live trending."""
    hybrid_weights: Mapping[str, float] | None = None
    """``hybrid``'s member weights chosen on the holdout (``models.hybrid.learn_weights``):
    its scorer here and ``extra["hybrid_weights"]`` of the bundle (None: the registry's)."""

    @property
    def als(self) -> AlsModel:
        """The ALS model (every bundle carries one: it defines the item and user spaces)."""
        model: AlsModel = self.models["als"]
        return model

    def scorers(self) -> dict[str, Scorer]:
        """Every fitted model, plus the algorithms served as a combination of them (``hybrid``,
        ``models.hybrid``), so the holdout evaluation scores every arm ``auto`` chooses from."""
        out: dict[str, Scorer] = dict(self.models)
        if "hybrid" in REGISTRY.served and "hybrid" not in out:
            found = fusion(self.fusion_members(), self.hybrid_weights)
            if found is not None:
                out["hybrid"] = found
        return out

    def fusion_members(self) -> dict[str, Scorer]:
        """The scorers ``hybrid`` fuses, by name: the fitted models, with trending as
        ``popular`` (what serving fuses under that name)."""
        out: dict[str, Scorer] = dict(self.models)
        if self.trending is not None:
            out[TREND] = self.trending
        return out

    def top_n_for(
        self, user_ids: Sequence[str], n: int, algorithm: str = "als"
    ) -> tuple[NDArray[np.str_], NDArray[np.int32], NDArray[np.float32]]:
        """Bulk top-n for known users by id, already-interacted items excluded.

        Returns (user_ids (m,) U of the users found in the training matrix, items (m, n) int32
        indices into ``matrix.item_ids`` (-1 padded), scores (m, n) float32). Unknown users are
        left out (they need cold-start handling).
        """
        scorers = self.scorers()
        if algorithm not in scorers:
            raise ValueError(f"unknown algorithm {algorithm!r}; fitted: {sorted(scorers)}")
        rows = index_of(self.matrix.user_ids, list(user_ids))
        rows = rows[rows >= 0]
        x = self.matrix.matrix
        items, scores = top_n(scorers[algorithm], rows, x[rows], n, exclude_seen=True)
        return self.matrix.user_ids[rows], items, scores

    def to_bundle(
        self,
        version: int,
        *,
        created_at: datetime | None = None,
        metrics: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> ModelBundle:
        m = self.matrix
        parts: dict[str, Any] = {}
        extra_files: dict[str, Any] = {}
        shipped: list[str] = []
        for name, model in self.models.items():
            ship = TRAINERS[name].bundle
            if ship is None:
                continue
            part = ship(model, self)
            if isinstance(part, Mapping):
                extra_files[name] = part
            else:
                parts[name] = part
            shipped.append(name)
        return ModelBundle(
            version=version,
            created_at=created_at or datetime.now(UTC),
            data_window=self.window,
            **parts,
            topn=TopNArrays(
                user_ids=m.user_ids[self.topn_users],
                items=self.topn_items,
                scores=np.where(np.isfinite(self.topn_scores), self.topn_scores, 0.0),
            ),
            algorithms=tuple(shipped),
            params=self.params.to_dict(),
            metrics=metrics or {},
            extra={
                "topn_algorithm": self.params.topn_algorithm,
                "confidence": "1 + alpha * w",
                **({"hybrid_weights": dict(self.hybrid_weights)} if self.hybrid_weights else {}),
                **(extra or {}),
            },
            extra_files=extra_files,
        )


def similar_lists(
    knn: ItemKnnModel, item_factors: NDArray[np.float32], n: int, batch_size: int = 2048
) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """n similar items for every item: its item-kNN neighbours, then (where it has fewer than n)
    the nearest items by ALS factor cosine.

    Returns (items (n_items, n) int32, -1 only if the catalogue is smaller than n + 1; scores
    (n_items, n) float32, descending per row: kNN similarity, then for the fill
    ``floor * (1 + cos) / 2`` with ``floor`` the row's smallest kNN score, 1 if it has none).
    """
    items, scores = knn.neighbours(n)
    need = np.flatnonzero((items < 0).any(axis=1))
    if need.size == 0:
        return items, scores
    y = np.asarray(item_factors, dtype=np.float32)
    norms = np.linalg.norm(y, axis=1)
    norms[norms == 0] = 1.0
    yn = y / norms[:, None]
    for start in range(0, need.size, batch_size):
        rows = need[start : start + batch_size]
        cos = yn[rows] @ yn.T
        cos[np.arange(rows.size), rows] = -np.inf
        have = items[rows]
        r, c = np.nonzero(have >= 0)
        cos[r, have[r, c]] = -np.inf
        fill_items, fill_cos = top_n_from_scores(cos, n)
        for k, row in enumerate(rows.tolist()):
            n_have = int(np.count_nonzero(items[row] >= 0))
            floor = float(scores[row, n_have - 1]) if n_have else 1.0
            take = n - n_have
            valid = fill_items[k, :take] >= 0
            count = int(np.count_nonzero(valid))
            items[row, n_have : n_have + count] = fill_items[k, :take][valid]
            scores[row, n_have : n_have + count] = floor * 0.5 * (1.0 + fill_cos[k, :take][valid])
    return items, scores


def fit_all(
    dataset: Dataset,
    params: TrainParams,
    *,
    reference_ts: float | None = None,
    lists: bool = True,
    exact_users: ArrayLike | None = None,
    warm_start: FittedModels | None = None,
    warm_iterations: int | None = None,
) -> FittedModels:
    """Fit every trained algorithm of the registry on a dataset (ALS, item-kNN, content and its
    map into ALS space, popularity, EASE when its parameters are set, any plug-in), then the
    similar-products lists and the top-N lists for recently active users.

    Event weights are decayed to ``reference_ts`` (default: the newest event in the dataset).
    ``lists=False`` skips the similar-products and top-N lists (left empty: (0, n) arrays) when
    only the scorers are needed, as for an offline evaluation; ``exact_users`` (ids) then limits
    the exact ALS user-factor solve to the users that will be scored (None = all users).
    ``warm_start`` starts ALS from another fit's factors (re-indexed by id; new users and items
    start random) and runs ``warm_iterations`` (default ``params.als.iterations``) iterations:
    refitting the whole window after evaluating on its first part costs a few iterations
    instead of a full fit.
    """
    interactions = dataset.interactions
    start, end = interactions.time_range()
    ref = end if reference_ts is None else reference_ts
    matrix = build_matrix(interactions, half_life_days=params.half_life_days, reference_ts=ref)
    x = matrix.matrix
    logger.info("training on %d users x %d items, %d cells", *matrix.shape, x.nnz)
    fitting = Fitting(dataset, matrix, params)
    if warm_start is not None:
        fitting.init = align_factors(
            warm_start.als,
            warm_start.matrix.user_ids,
            warm_start.matrix.item_ids,
            matrix.user_ids,
            matrix.item_ids,
            params.als.random_state,
        )
        fitting.iterations = warm_iterations
    if exact_users is not None:
        exact_rows = index_of(matrix.user_ids, exact_users)
        fitting.exact_rows = exact_rows[exact_rows >= 0]
    for algorithm in trained():
        algo_params = params.params_for(algorithm.name)
        if algo_params is None:
            continue
        missing = [a for a in algorithm.after if a not in fitting.models]
        if missing:
            raise ValueError(f"{algorithm.name} needs {missing} fitted first")
        model = algorithm.fit(fitting, algo_params)
        if model is not None:  # None: not applicable to this data (EASE above max_items)
            fitting.models[algorithm.name] = model
    models = fitting.models
    scorers: dict[str, Scorer] = dict(models)
    if params.topn_algorithm not in scorers:
        raise ValueError(f"topn_algorithm {params.topn_algorithm!r} not among {sorted(scorers)}")
    als, knn = models["als"], models["itemknn"]
    if lists:
        similar_items, similar_scores = similar_lists(knn, als.item_factors, params.similar_n)
        users = np.asarray(
            recent_users(matrix, params.topn_active_days, params.topn_max_users), dtype=np.int64
        )
        topn_items, topn_scores = top_n(
            scorers[params.topn_algorithm], users, x[users], params.topn_n, exclude_seen=True
        )
    else:
        similar_items = np.zeros((0, params.similar_n), dtype=np.int32)
        similar_scores = np.zeros((0, params.similar_n), dtype=np.float32)
        users = np.zeros(0, dtype=np.int64)
        topn_items = np.zeros((0, params.topn_n), dtype=np.int32)
        topn_scores = np.zeros((0, params.topn_n), dtype=np.float32)
    return FittedModels(
        params=params,
        matrix=matrix,
        window=DataWindow.from_timestamps(start, end),
        models=models,
        trending=TrendingScorer.at(interactions, matrix.item_ids, ref),
        similar_items=similar_items,
        similar_scores=similar_scores,
        topn_users=users,
        topn_items=topn_items,
        topn_scores=topn_scores,
    )
