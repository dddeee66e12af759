"""Algorithms on small synthetic data with a known structure (two taste clusters)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import scipy.sparse as sp

from streamrec_shared.algorithms import BUILTIN, Algorithm, Registry
from streamrec_shared.factors import confidence, fold_in, gram
from streamrec_trainer.dataset import Catalog, Dataset, Interactions, catalog_from_records
from streamrec_trainer.models import (
    AlsParams,
    ContentFeaturizer,
    ContentParams,
    EaseParams,
    ItemKnnParams,
    PopularParams,
    Scorer,
    TrainParams,
    fit_all,
    fit_als,
    fit_content,
    fit_ease,
    fit_itemknn,
    fit_popular,
    similar_lists,
    top_n,
    top_n_from_scores,
)
from streamrec_trainer.models.content import fit_ridge_map, out_of_fold_factors

N_USERS, N_ITEMS, HALF = 40, 20, 10  # users 0..19 like items 0..9, users 20..39 items 10..19


@pytest.fixture(scope="module")
def clustered() -> sp.csr_matrix:
    rng = np.random.default_rng(0)
    dense = np.zeros((N_USERS, N_ITEMS), dtype=np.float32)
    for u in range(N_USERS):
        lo = 0 if u < N_USERS // 2 else HALF
        items = rng.choice(np.arange(lo, lo + HALF), size=5, replace=False)
        dense[u, items] = rng.choice([1.0, 5.0, 10.0], size=5)
    return sp.csr_matrix(dense)


def _in_cluster_share(scorer: Scorer, x: sp.csr_matrix) -> float:
    users = np.arange(N_USERS, dtype=np.int64)
    items, _ = top_n(scorer, users, x, 3)
    own = np.where(users[:, None] < N_USERS // 2, items < HALF, items >= HALF)
    return float(own[items >= 0].mean())


def test_als_learns_clusters_and_user_factors_equal_fold_in(clustered: sp.csr_matrix) -> None:
    params = AlsParams(factors=4, regularization=0.1, alpha=0.5, iterations=15, num_threads=1)
    model = fit_als(clustered, params)
    assert model.item_factors.shape == (N_ITEMS, 4)
    assert model.item_factors.dtype == np.float32
    assert model.user_factors.shape == (N_USERS, 4)
    assert _in_cluster_share(model, clustered) > 0.9
    # The stored user vectors are exactly what the stream processor's fold-in computes.
    yty = gram(model.item_factors)
    for u in range(N_USERS):
        row = clustered[u]
        x = fold_in(model.item_factors, row.indices, confidence(row.data, 0.5), 0.1, yty=yty)
        np.testing.assert_allclose(x, model.user_factors[u], rtol=1e-5, atol=1e-6)
    again = fit_als(clustered, params)
    np.testing.assert_array_equal(again.item_factors, model.item_factors)  # fixed random_state


@pytest.mark.parametrize("method", ["bm25", "cosine"])
@pytest.mark.parametrize("binary", [True, False])
def test_itemknn_learns_clusters(
    clustered: sp.csr_matrix, method: Literal["bm25", "cosine"], binary: bool
) -> None:
    before = clustered.copy()
    model = fit_itemknn(clustered, ItemKnnParams(method=method, k=8, binary=binary, num_threads=1))
    assert model.name == f"itemknn_{method}"
    assert (clustered != before).nnz == 0  # the input is never modified
    assert _in_cluster_share(model, clustered) > 0.95
    nbrs, scores = model.neighbours(5)
    assert nbrs.shape == (N_ITEMS, 5)
    assert nbrs.dtype == np.int32
    assert not np.any(nbrs == np.arange(N_ITEMS)[:, None])
    assert np.all(np.diff(scores, axis=1) <= 0)
    assert np.all((nbrs[:HALF] < HALF) | (nbrs[:HALF] < 0))


def test_ease_learns_clusters(clustered: sp.csr_matrix) -> None:
    model = fit_ease(clustered, EaseParams(l2=5.0))
    assert np.all(np.diag(model.weights) == 0)
    assert _in_cluster_share(model, clustered) > 0.95
    with pytest.raises(ValueError, match="max_items"):
        fit_ease(clustered, EaseParams(max_items=5))


def test_ease_sparsified_keeps_the_largest_weights(clustered: sp.csr_matrix) -> None:
    model = fit_ease(clustered, EaseParams(l2=5.0))
    b = model.weights
    # every off-diagonal weight kept: the lists rebuild B exactly (so scores are x @ B)
    nbrs, weights = model.neighbours(N_ITEMS + 5)
    assert nbrs.shape == (N_ITEMS, N_ITEMS - 1)
    rebuilt = np.zeros_like(b)
    rows = np.repeat(np.arange(N_ITEMS), nbrs.shape[1]).reshape(nbrs.shape)
    ok = nbrs >= 0
    rebuilt[rows[ok], nbrs[ok]] = weights[ok]
    np.testing.assert_array_equal(rebuilt, b)
    # n per item: the n largest by magnitude (negative ones too), largest weight first
    nbrs, weights = model.neighbours(3)
    assert nbrs.shape == (N_ITEMS, 3)
    assert np.all(np.diff(weights, axis=1) <= 0)
    for i in range(N_ITEMS):
        off = np.abs(np.delete(b[i], i))
        assert np.isclose(np.sort(np.abs(weights[i]))[0], np.sort(off)[-3])
        assert i not in nbrs[i]
    assert (weights < 0).any()


def test_popular_caps_per_user_and_lists_categories() -> None:
    x = sp.csr_matrix(np.array([[25.0, 5.0, 0.0], [0.0, 5.0, 1.0]], dtype=np.float32))
    capped = fit_popular(x, PopularParams(cap=5.0), ["mugs", "mugs", "lamps"])
    np.testing.assert_allclose(capped.item_scores, [5.0, 10.0, 1.0])
    raw = fit_popular(x, PopularParams(cap=None))
    np.testing.assert_allclose(raw.item_scores, [25.0, 10.0, 1.0])
    assert capped.categories.tolist() == ["lamps", "mugs"]
    assert capped.category_items[1, :3].tolist() == [1, 0, -1]
    assert capped.category_items[0, :2].tolist() == [2, -1]
    assert capped.top_items(2)[0].tolist() == [1, 0]
    assert capped.score(np.array([0, 1]), x).shape == (2, 3)


def _catalog() -> Catalog:
    return catalog_from_records(
        [
            {
                "product_id": "a",
                "category": "mugs",
                "price": 4.0,
                "name": "red ceramic mug",
                "attributes": {"colour": "red"},
            },
            {
                "product_id": "b",
                "category": "mugs",
                "price": 4.5,
                "name": "blue ceramic mug",
                "attributes": {"colour": "blue"},
            },
            {"product_id": "c", "category": "lamps", "price": 40.0, "name": "brass desk lamp"},
            {"product_id": "d", "category": "lamps", "price": 45.0, "name": "brass floor lamp"},
            {"product_id": "e", "price": None, "name": ""},
        ]
    )


def test_content_featurizer_is_deterministic_and_serialisable() -> None:
    cat = _catalog()
    feat = ContentFeaturizer.fit(
        cat, ContentParams(text_buckets=64, attribute_buckets=8, price_bands=2)
    )
    v = feat.transform(cat)
    assert v.shape == (5, feat.n_features)
    assert v.dtype == np.float32
    norms = np.sqrt(np.asarray(v.multiply(v).sum(axis=1)).ravel())
    np.testing.assert_allclose(norms[:4], 1.0, rtol=1e-6)
    assert norms[4] == 0.0  # nothing known about "e"
    sim = (v @ v.T).toarray()
    assert sim[0, 1] > sim[0, 2]
    assert sim[2, 3] > sim[2, 0]
    rebuilt = ContentFeaturizer.from_vocabulary(feat.vocabulary(), feat.text_idf)
    assert (rebuilt.transform(cat) != v).nnz == 0
    assert feat.vocabulary()["categories"] == ["lamps", "mugs"]


def test_ridge_map_recovers_a_linear_map_and_out_of_fold() -> None:
    rng = np.random.default_rng(1)
    v = sp.random(200, 30, density=0.2, random_state=2, dtype=np.float32, format="csr")
    w_true = rng.normal(size=(30, 4)).astype(np.float32)
    y = np.asarray(v @ w_true, dtype=np.float32) + 0.5
    w, b = fit_ridge_map(v, y, l2=1e-6)
    np.testing.assert_allclose(np.asarray(v @ w) + b, y, atol=1e-3)
    oof = out_of_fold_factors(v, y, l2=1e-3, folds=4)
    assert oof.shape == y.shape
    assert np.abs(oof - y).mean() < 0.2 * np.abs(y - y.mean(axis=0)).mean()


def test_fit_content_maps_new_products_into_als_space() -> None:
    cat = _catalog()
    factors = np.array([[1, 0], [1, 0.1], [0, 1], [0.1, 1]], dtype=np.float32)
    model = fit_content(cat, ["a", "b", "c", "d"], ContentParams(l2=0.01), item_factors=factors)
    assert model.item_ids.tolist() == ["a", "b", "c", "d", "e"]  # model items first
    assert model.n_model_items == 4
    assert model.item_factors is not None
    assert model.item_factors.shape == (5, 2)
    np.testing.assert_allclose(model.item_factors[:4], factors, atol=0.05)
    # A new product described like the lamps lands next to them.
    new = catalog_from_records(
        [{"product_id": "z", "category": "lamps", "price": 42.0, "name": "brass table lamp"}]
    )
    assert model.projection is not None
    assert model.bias is not None
    vec = model.featurizer.transform(new)
    z = np.asarray(vec @ model.projection).ravel() + model.bias
    assert z[1] > z[0]


def test_top_n_from_scores_excludes_pads_and_breaks_ties() -> None:
    scores = np.array([[1.0, 3.0, 3.0, 0.0], [np.nan, -np.inf, 2.0, 1.0]], dtype=np.float32)
    exclude = sp.csr_matrix(np.array([[0, 0, 1, 0], [0, 0, 0, 0]], dtype=np.float32))
    items, vals = top_n_from_scores(scores.copy(), 3, exclude)
    assert items.tolist() == [[1, 0, 3], [2, 3, -1]]
    assert vals[1, 2] == -np.inf
    items, _ = top_n_from_scores(scores.copy(), 6)
    assert items[0].tolist() == [1, 2, 0, 3, -1, -1]


def test_similar_lists_fill_every_item(clustered: sp.csr_matrix) -> None:
    knn = fit_itemknn(clustered, ItemKnnParams(k=3, num_threads=1))
    als = fit_als(clustered, AlsParams(factors=4, num_threads=1))
    items, scores = similar_lists(knn, als.item_factors, 8)
    assert items.shape == (N_ITEMS, 8)
    assert np.all(items >= 0)
    assert not np.any(items == np.arange(N_ITEMS)[:, None])
    assert all(len(set(row)) == 8 for row in items.tolist())
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def _dataset() -> Dataset:
    rng = np.random.default_rng(5)
    t0, day = 1_300_000_000.0, 86_400.0
    rows = []
    for u in range(N_USERS):
        lo = 0 if u < N_USERS // 2 else HALF
        for _ in range(6):
            rows.append(
                {
                    "user_id": f"u{u}",
                    "item_id": f"p{int(rng.integers(lo, lo + HALF))}",
                    "event_type": str(rng.choice(["view", "purchase", "add_to_cart"])),
                    "ts": t0 + float(rng.uniform(0, 60)) * day,
                }
            )
    cat = catalog_from_records(
        [
            {
                "product_id": f"p{i}",
                "category": "A" if i < HALF else "B",
                "price": 1.0 + i,
                "name": f"thing {'alpha' if i < HALF else 'beta'} {i}",
            }
            for i in range(N_ITEMS + 2)
        ]
    )
    return Dataset(interactions=Interactions.from_records(rows), catalog=cat)


def test_fit_all_and_bundle(tmp_path: Path) -> None:
    params = TrainParams(
        half_life_days=30.0,
        als=AlsParams(factors=4, num_threads=1),
        itemknn=ItemKnnParams(k=5, num_threads=1),
        content=ContentParams(text_buckets=32, attribute_buckets=4),
        popular=PopularParams(top_n=5),
        ease=EaseParams(l2=5.0),
        similar_n=4,
        topn_n=5,
        topn_algorithm="ease",
        topn_active_days=20.0,
    )
    fitted = fit_all(_dataset(), params)
    assert set(fitted.models) == {"als", "itemknn", "content", "popular", "ease", "sknn"}
    # scorers: the fitted models plus hybrid, their serving fusion (scored offline too)
    assert set(fitted.scorers()) == {
        "als",
        "itemknn",
        "content",
        "popular",
        "ease",
        "sknn",
        "hybrid",
    }
    assert fitted.similar_items.shape == (N_ITEMS, 4)
    assert 0 < fitted.topn_users.size < N_USERS
    bundle = fitted.to_bundle(3, metrics={"ndcg@20": 0.5})
    assert bundle.n_items == N_ITEMS
    assert bundle.n_users == N_USERS
    assert bundle.factors == 4
    assert bundle.content is not None
    assert bundle.content.item_ids.size == N_ITEMS + 2
    assert bundle.popular is not None
    assert bundle.popular.categories.tolist() == ["A", "B"]
    assert bundle.params["topn_algorithm"] == "ease"
    assert TrainParams.from_dict(bundle.params) == params
    bundle.save(tmp_path / "3")
    loaded = type(bundle).load(tmp_path / "3")
    np.testing.assert_array_equal(loaded.als.item_factors, bundle.als.item_factors)
    assert loaded.topn is not None
    assert loaded.topn.user_ids.dtype.kind == "U"
    # EASE ships its sparsified weights (ease.npz, the layout of item-kNN's lists)
    assert "ease" in bundle.algorithms
    ease = loaded.extra_files["ease"]
    assert ease["neighbours"].shape == ease["neighbour_scores"].shape == (N_ITEMS, N_ITEMS - 1)
    assert bool(ease["binary"])
    with pytest.raises(ValueError, match="topn_algorithm"):
        fit_all(
            _dataset(),
            TrainParams(
                als=AlsParams(factors=2, num_threads=1),
                itemknn=ItemKnnParams(k=3, num_threads=1),
                ease=None,
                topn_algorithm="ease",
            ),
        )
    # a catalogue above EASE's max_items: skipped (not fitted, not shipped), nothing fails
    small = dataclasses.replace(
        params, ease=EaseParams(max_items=N_ITEMS - 1), topn_algorithm="als"
    )
    skipped = fit_all(_dataset(), small)
    assert "ease" not in skipped.models
    assert "ease" not in skipped.to_bundle(4).algorithms


@pytest.mark.parametrize(("n", "d"), [(50, 200), (300, 40)])
def test_ridge_map_primal_and_dual_match_brute_force(n: int, d: int) -> None:
    v = sp.random(n, d, density=0.1, random_state=1, format="csr")
    y = np.random.default_rng(0).normal(size=(n, 3)).astype(np.float32)
    w, b = fit_ridge_map(v, y, 0.7)
    a = np.hstack([v.toarray(), np.ones((n, 1))])
    penalty = np.eye(d + 1) * 0.7
    penalty[d, d] = 0.0  # the intercept is not penalised
    expected = np.linalg.solve(a.T @ a + penalty, a.T @ y)
    np.testing.assert_allclose(w, expected[:d], atol=1e-5)
    np.testing.assert_allclose(b, expected[d], atol=1e-5)


def test_top_n_for_user_ids() -> None:
    params = TrainParams(
        als=AlsParams(factors=4, num_threads=1),
        itemknn=ItemKnnParams(k=5, num_threads=1),
        content=ContentParams(text_buckets=32, attribute_buckets=4),
    )
    fitted = fit_all(_dataset(), params)
    users, items, scores = fitted.top_n_for(["u1", "nobody", "u30"], 3, algorithm="itemknn")
    assert users.tolist() == ["u1", "u30"]
    assert items.shape == (2, 3)
    numbers = np.vectorize(lambda i: int(fitted.matrix.item_ids[i][1:]))(items)
    assert np.all(numbers[0] < HALF)  # u1 is in the first taste cluster
    assert np.all(numbers[1] >= HALF)
    assert np.all(np.diff(scores, axis=1) <= 0)
    seen = fitted.matrix.matrix[fitted.matrix.user_index["u1"]].indices
    assert not set(items[0].tolist()) & set(seen.tolist())
    with pytest.raises(ValueError, match="unknown algorithm"):
        fitted.top_n_for(["u1"], 3, algorithm="nope")


def test_the_registry_derives_every_list_of_names() -> None:
    reg = Registry(BUILTIN)
    assert reg.served == ("als", "itemknn", "content", "popular", "hybrid", "ease", "sknn")
    assert reg.accepted == {"auto", *reg.served}
    assert reg.arms == ("als", "itemknn", "content", "hybrid", "ease", "sknn")
    assert reg.fallbacks("content") == ("content", "als", "itemknn", "ease", "sknn", "popular")
    assert dict(reg.hybrid_members) == {"als": 1.0, "itemknn": 0.8, "content": 0.5, "ease": 1.0}
    assert reg.recent_members == (("sknn", 2.0), ("itemknn", 1.0), ("content", 0.6))
    assert reg.trained() == ("als", "itemknn", "content", "popular", "ease", "sknn")
    codes = reg.codes  # a live view: a module may bind it once
    reg.register(Algorithm("extra", "x", fallback=9, hybrid_weight=0.1))
    assert codes["extra"] == "x"
    assert reg.by_code["x"] == "extra"
    assert "extra" in reg.accepted
    assert reg.fallbacks("als")[-1] == "extra"
    reg.unregister("extra")
    assert "extra" not in codes
    assert "extra" not in reg.accepted
    with pytest.raises(ValueError, match="already used"):
        reg.register(Algorithm("other", "a"))
    with pytest.raises(ValueError, match="bad algorithm name"):
        reg.register(Algorithm("auto", "z"))
