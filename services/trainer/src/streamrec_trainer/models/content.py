"""Content model: product features -> sparse item vectors, and a ridge map into ALS space.

The featuriser itself (vector layout, hashing, tokens) is ``streamrec_shared.content``, one
definition for the trainer and the recommender's placement of new products; this module fits it
(categories seen, ``price_bands`` quantile bands of log(price), text idf over the catalogue).

The ridge map ``W`` (n_features, f) solves ``min ||V W + b - Y||^2 + l2 ||W||^2`` over the
items that have ALS factors ``Y``; ``V W + b`` is the ALS-space factor of any product.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray

from streamrec_shared.artifacts import ContentArrays
from streamrec_shared.content import ContentSpace, bucket, tokens
from streamrec_trainer.dataset import Catalog
from streamrec_trainer.models import registry
from streamrec_trainer.models.als import offline_als
from streamrec_trainer.models.base import FactorScores, as_csr32

if TYPE_CHECKING:
    from streamrec_trainer.models.fit import FittedModels


@dataclass(frozen=True)
class ContentParams:
    """Featuriser sizes and block weights; l2 of the ridge map into ALS space."""

    text_buckets: int = 2048
    attribute_buckets: int = 256
    price_bands: int = 8
    category_weight: float = 1.0
    price_weight: float = 0.5
    attribute_weight: float = 1.0
    text_weight: float = 1.0
    l2: float = 3.0


class ContentFeaturizer(ContentSpace):
    """The shared featuriser, fitted on a catalogue; ``vocabulary()`` + ``text_idf`` fully
    describe it."""

    @classmethod
    def from_vocabulary(
        cls, vocabulary: Mapping[str, Any], text_idf: ArrayLike
    ) -> ContentFeaturizer:
        return cls(**ContentSpace.fields_of(vocabulary, text_idf))

    @classmethod
    def fit(cls, catalog: Catalog, params: ContentParams) -> ContentFeaturizer:
        cats = tuple(sorted({c for c in catalog.categories.tolist() if c}))
        prices = catalog.prices[np.isfinite(catalog.prices) & (catalog.prices > 0)]
        edges: tuple[float, ...] = ()
        if prices.size and params.price_bands > 1:
            qs = np.linspace(0, 1, params.price_bands + 1)[1:-1]
            edges = tuple(sorted(set(np.quantile(np.log(prices), qs).round(6).tolist())))
        df = np.zeros(params.text_buckets, dtype=np.float64)
        for text in catalog.texts.tolist():
            for b in {bucket(t, params.text_buckets) for t in tokens(text)}:
                df[b] += 1
        n_docs = max(len(catalog), 1)
        idf = np.log((1.0 + n_docs) / (1.0 + df)) + 1.0
        return cls(
            categories=cats,
            price_edges=edges,
            attribute_buckets=params.attribute_buckets,
            text_buckets=params.text_buckets,
            block_weights={
                "category": params.category_weight,
                "price": params.price_weight,
                "attribute": params.attribute_weight,
                "text": params.text_weight,
            },
            text_idf=idf.astype(np.float32),
        )

    def transform(self, catalog: Catalog) -> sp.csr_matrix:
        """csr_matrix (len(catalog), n_features) float32, rows L2-normalised (empty rows stay 0)."""
        indptr = [0]
        indices: list[int] = []
        data: list[float] = []
        for cat, price, attrs, text in zip(
            catalog.categories.tolist(),
            catalog.prices.tolist(),
            catalog.attributes,
            catalog.texts.tolist(),
            strict=True,
        ):
            row = self.row(cat, float(price), attrs, text)
            norm = math.sqrt(sum(v * v for v in row.values()))
            for k in sorted(row):
                indices.append(k)
                data.append(row[k] / norm)
            indptr.append(len(indices))
        return sp.csr_matrix(
            (
                np.asarray(data, dtype=np.float32),
                np.asarray(indices, dtype=np.int32),
                np.asarray(indptr, dtype=np.int64),
            ),
            shape=(len(catalog), self.n_features),
        )


@dataclass(frozen=True)
class ContentModel:
    """item_ids (n_content,) U: the training matrix's items first (same order), then catalogue
    products without interactions; vectors csr_matrix (n_content, n_features) float32;
    projection (n_features, f) float32 and bias (f,) float32 (None without ALS factors);
    item_factors (n_content, f) float32 = vectors @ projection + bias (or None)."""

    featurizer: ContentFeaturizer
    item_ids: NDArray[np.str_]
    vectors: sp.csr_matrix
    n_model_items: int
    projection: NDArray[np.float32] | None
    bias: NDArray[np.float32] | None
    item_factors: NDArray[np.float32] | None

    @property
    def name(self) -> str:
        return "content"

    def score(self, users: NDArray[np.int64], user_items: sp.csr_matrix) -> NDArray[np.float32]:
        """Cosine-style content similarity to the user's weighted items: (m, n_model_items)."""
        del users
        v = self.vectors[: self.n_model_items]
        profile = as_csr32(user_items) @ v
        return np.asarray((profile @ v.T).toarray(), dtype=np.float32)


@dataclass(frozen=True)
class MappedFactorsScorer(FactorScores):
    """Scores with ALS user factors against content-predicted item factors: how well a product
    never seen in training would be ranked. user_factors (n_users, f), item_factors (n_items, f)."""

    @property
    def name(self) -> str:
        return "content_to_als"


def fit_ridge_map(
    vectors: sp.csr_matrix, targets: NDArray[np.float32], l2: float
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Ridge regression with an unpenalised intercept from content vectors to targets.

    vectors: csr (n, d); targets: (n, f). Returns (projection (d, f) float32, bias (f,) float32)
    minimising ``||V W + 1 b - Y||^2 + l2 ||W||^2``. Solved in the primal ((d + 1)-square
    normal equations) when d <= n, else in the dual (n-square kernel system on the centred
    data), so the cost is O(min(n, d)^3); V stays sparse either way.
    """
    if l2 <= 0:
        raise ValueError("l2 must be > 0")
    y = np.asarray(targets, dtype=np.float64)
    v = sp.csr_matrix(vectors, dtype=np.float64)
    n, d = v.shape
    if n == 0:
        return np.zeros((d, y.shape[1]), np.float32), np.zeros(y.shape[1], np.float32)
    v_mean = np.asarray(v.mean(axis=0)).ravel()
    y_mean = y.mean(axis=0)
    yc = y - y_mean
    if d <= n:
        # Centred normal equations: (Vc^T Vc + l2 I) W = Vc^T Yc, Vc^T Vc = V^T V - n m m^T.
        gram = np.asarray((v.T @ v).toarray()) - n * np.outer(v_mean, v_mean)
        gram[np.diag_indices(d)] += l2
        w = np.linalg.solve(gram, np.asarray(v.T @ yc))
    else:
        # Dual: alpha = (Vc Vc^T + l2 I)^-1 Yc, W = Vc^T alpha.
        k = np.asarray((v @ v.T).toarray())
        vm = np.asarray(v @ v_mean).ravel()
        kc = k - vm[:, None] - vm[None, :] + float(v_mean @ v_mean)
        kc[np.diag_indices(n)] += l2
        alpha = np.linalg.solve(kc, yc)
        w = np.asarray(v.T @ alpha) - np.outer(v_mean, alpha.sum(axis=0))
    bias = y_mean - v_mean @ w
    return w.astype(np.float32), bias.astype(np.float32)


def out_of_fold_factors(
    vectors: sp.csr_matrix,
    targets: NDArray[np.float32],
    l2: float,
    folds: int = 5,
    seed: int = 0,
) -> NDArray[np.float32]:
    """Cold-start check: each row's factor predicted by a ridge map fitted *without* that row.

    vectors: csr (n, d); targets: (n, f) ALS item factors. Rows are split into ``folds`` random
    folds; returns ndarray (n, f) float32 of out-of-fold predictions, i.e. what each item would
    have received as a brand-new product.
    """
    n = vectors.shape[0]
    fold_of = np.random.default_rng(seed).integers(0, folds, size=n)
    out = np.zeros((n, targets.shape[1]), dtype=np.float32)
    for k in range(folds):
        held = fold_of == k
        if not held.any():
            continue
        w, b = fit_ridge_map(vectors[~held], targets[~held], l2)
        out[held] = np.asarray(vectors[held] @ w, dtype=np.float32) + b
    return out


def fit_content(
    catalog: Catalog,
    item_ids: Sequence[str] | NDArray[np.str_],
    params: ContentParams,
    item_factors: NDArray[np.float32] | None = None,
    fit_rows: NDArray[np.int64] | None = None,
) -> ContentModel:
    """Fit the featuriser on the catalogue (plus the model's items) and, given ALS item factors
    (n_items, f) aligned with ``item_ids``, the ridge map. ``fit_rows`` restricts the ridge fit
    to those item rows (e.g. items with enough interactions)."""
    model_ids = np.asarray(item_ids, dtype=np.str_)
    model_set = set(model_ids.tolist())
    extra = np.asarray(
        [p for p in catalog.product_ids.tolist() if p not in model_set], dtype=np.str_
    )
    all_ids = np.concatenate([model_ids, extra]).astype(np.str_)
    aligned = catalog.reindex(all_ids)
    featurizer = ContentFeaturizer.fit(aligned, params)
    vectors = as_csr32(featurizer.transform(aligned))
    projection = bias = predicted = None
    if item_factors is not None:
        rows = np.arange(model_ids.size) if fit_rows is None else np.asarray(fit_rows)
        projection, bias = fit_ridge_map(vectors[rows], item_factors[rows], params.l2)
        predicted = np.asarray(vectors @ projection, dtype=np.float32) + bias
    return ContentModel(
        featurizer=featurizer,
        item_ids=all_ids,
        vectors=vectors,
        n_model_items=int(model_ids.size),
        projection=projection,
        bias=bias,
        item_factors=predicted,
    )


# --- registration (streamrec_trainer.models.registry) ------------------------------------------
def _fit(fitting: registry.Fitting, params: ContentParams) -> ContentModel:
    """Featuriser on the catalogue; ridge map onto the ALS factors of items with interactions."""
    als = fitting.models["als"]
    item_counts = np.diff(fitting.x.tocsc().indptr)
    return fit_content(
        fitting.dataset.catalog,
        fitting.matrix.item_ids,
        params,
        item_factors=als.item_factors,
        fit_rows=np.flatnonzero(item_counts > 0).astype(np.int64),
    )


def _bundle(model: ContentModel, fitted: FittedModels) -> ContentArrays:
    del fitted
    if model.projection is None or model.bias is None or model.item_factors is None:
        raise ValueError("content model has no ALS map")
    return ContentArrays(
        item_ids=model.item_ids,
        vector_data=model.vectors.data,
        vector_indices=model.vectors.indices,
        vector_indptr=model.vectors.indptr,
        n_features=model.featurizer.n_features,
        projection=model.projection,
        projection_bias=model.bias,
        item_factors=model.item_factors,
        text_idf=model.featurizer.text_idf,
        vocabulary=model.featurizer.vocabulary(),
    )


def _offline_content(ctx: registry.OfflineContext, p: registry.Params) -> ContentModel:
    del p
    return fit_content(ctx.catalog, ctx.holdout.item_ids, ContentParams())


def _offline_content_to_als(
    ctx: registry.OfflineContext, p: registry.Params
) -> MappedFactorsScorer:
    """ALS user factors against item factors predicted from content by a ridge map fitted on
    the *other* items (5-fold out-of-fold), i.e. every item scored as if it were brand new."""
    chosen = ctx.chosen.get("als")
    if chosen is None:
        raise RuntimeError("content_to_als needs the chosen ALS parameters first")
    als = offline_als(ctx, chosen)
    model = fit_content(ctx.catalog, ctx.holdout.item_ids, ContentParams())
    n = model.n_model_items
    predicted = out_of_fold_factors(
        model.vectors[:n], als.item_factors, float(p["l2"]), folds=5, seed=0
    )
    return MappedFactorsScorer(user_factors=als.user_factors, item_factors=predicted)


def _als_half_life(ctx: registry.OfflineContext, p: registry.Params) -> float | None:
    chosen = ctx.chosen.get("als")
    return registry.half_life(chosen if chosen is not None else p)


registry.register(
    registry.TrainerAlgorithm(
        "content",
        ContentParams,
        _fit,
        after=("als",),
        bundle=_bundle,
        offline={
            "content": registry.OfflineAdapter(
                registry.grid(half_life_days=[None, 90.0]), _offline_content, order=50
            ),
            "content_to_als": registry.OfflineAdapter(
                registry.grid(l2=[1.0, 10.0, 100.0]),
                _offline_content_to_als,
                order=51,
                needs=("als",),
                scoring_half_life=_als_half_life,
            ),
        },
    )
)
