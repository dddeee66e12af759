"""Fold-in and top-k math (streamrec_shared.factors) checked against implicit itself."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from streamrec_shared.factors import confidence, fold_in, gram, top_k

# implicit solves the same system in float32 (sposv); we solve it in float64. The difference is
# float32 round-off (eps 6e-8) in forming and solving A, amplified by cond(A): ~5-10 here,
# giving relative differences below 1e-6 (measured: <= 1e-6 on these problems, 1.6e-6 on the
# Online Retail model, 5.6e-6 with cond(A) ~ 100). 1e-5 is a tight bound: a wrong confidence
# convention or regularisation changes the solution by 1e-2 or more.
RTOL = 1e-5


def _random_confidences(seed: int, n_users: int = 120, n_items: int = 80) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < 0.08) * rng.integers(1, 6, (n_users, n_items))
    weights = sp.csr_matrix(dense.astype(np.float32))
    conf = weights.copy()
    conf.data = confidence(weights.data, alpha=2.0)
    return conf


@pytest.fixture(scope="module")
def fitted() -> tuple[AlternatingLeastSquares, sp.csr_matrix]:
    conf = _random_confidences(0)
    with threadpool_limits(limits=1, user_api="blas"):
        model = AlternatingLeastSquares(
            factors=16, regularization=0.1, alpha=1.0, iterations=10, random_state=7, num_threads=1
        )
        model.fit(conf, show_progress=False)
    return model, conf


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b)) / max(float(np.linalg.norm(b)), 1e-12)


def test_fold_in_matches_implicit_recalculate_user(
    fitted: tuple[AlternatingLeastSquares, sp.csr_matrix],
) -> None:
    model, conf = fitted
    y = model.item_factors
    yty = gram(y)
    worst = 0.0
    for u in range(conf.shape[0]):
        row = conf[u]
        ours = fold_in(y, row.indices, row.data, model.regularization, yty=yty)
        theirs = model.recalculate_user(u, row)
        assert ours.dtype == np.float32
        assert ours.shape == (16,)
        worst = max(worst, _rel_err(ours, theirs))
    assert worst < RTOL


def test_fold_in_matches_recommend_with_recalculate_user(
    fitted: tuple[AlternatingLeastSquares, sp.csr_matrix],
) -> None:
    model, conf = fitted
    y = model.item_factors
    for u in (0, 5, 17, 42):
        row = conf[u]
        ids, scores = model.recommend(
            u, row, N=10, recalculate_user=True, filter_already_liked_items=True
        )
        x = fold_in(y, row.indices, row.data, model.regularization)
        ours = y[ids] @ x
        np.testing.assert_allclose(ours, scores, rtol=RTOL, atol=RTOL * np.abs(scores).max())
        # and the ranking agrees: implicit's top ids are our top ids over unseen items
        mine = y @ x
        best, _ = top_k(mine, 10, exclude_indices=row.indices)
        assert set(best[:5].tolist()) == set(ids[:5].tolist())


def test_fold_in_with_alpha_inside_implicit_is_the_same_system(
    fitted: tuple[AlternatingLeastSquares, sp.csr_matrix],
) -> None:
    # implicit multiplies its input by its own alpha: c = alpha * input. Handing fold_in those
    # confidences gives implicit's answer for any alpha, so our convention only fixes alpha=1.
    model, conf = fitted
    raw = conf.copy()
    raw.data = raw.data / 3.0
    model.alpha = 3.0
    try:
        for u in (1, 2, 3):
            theirs = model.recalculate_user(u, raw[u])
            ours = fold_in(model.item_factors, raw[u].indices, 3.0 * raw[u].data, 0.1)
            assert _rel_err(ours, theirs) < RTOL
    finally:
        model.alpha = 1.0


def test_fold_in_negative_confidence_matches_implicit(
    fitted: tuple[AlternatingLeastSquares, sp.csr_matrix],
) -> None:
    model, conf = fitted
    row = conf[3].copy()
    row.data[0] = -row.data[0]
    theirs = model.recalculate_user(3, row)
    ours = fold_in(model.item_factors, row.indices, row.data, model.regularization)
    assert _rel_err(ours, theirs) < RTOL


def test_fold_in_solves_the_normal_equations() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(size=(30, 5)).astype(np.float32)
    idx = np.array([3, 7, 11])
    c = np.array([2.0, 5.0, 1.5])
    x = fold_in(y, idx, c, 0.5).astype(np.float64)
    # Dense Hu et al. objective: sum_i c_i (p_i - x.y_i)^2 + reg |x|^2 with c=1, p=0 elsewhere.
    cfull = np.ones(30)
    cfull[idx] = c
    p = np.zeros(30)
    p[idx] = 1.0
    yd = y.astype(np.float64)
    grad = yd.T @ (cfull * (yd @ x - p)) + 0.5 * x
    assert np.abs(grad).max() < 1e-5


def test_fold_in_edge_cases() -> None:
    y = np.eye(4, dtype=np.float32)
    assert np.array_equal(fold_in(y, [], [], 0.1), np.zeros(4, dtype=np.float32))
    with pytest.raises(ValueError, match="unique"):
        fold_in(y, [1, 1], [2.0, 2.0], 0.1)
    with pytest.raises(IndexError):
        fold_in(y, [4], [2.0], 0.1)
    with pytest.raises(ValueError, match="same length"):
        fold_in(y, [1, 2], [2.0], 0.1)
    np.testing.assert_allclose(
        fold_in(y, [1], [3.0], 0.1, yty=gram(y)), fold_in(y, [1], [3.0], 0.1)
    )


def test_confidence() -> None:
    np.testing.assert_allclose(confidence([0.0, 1.0, 5.0], 2.0), [1.0, 3.0, 11.0])
    assert confidence([1.0], 1.0).dtype == np.float32


def test_top_k_matches_full_sort() -> None:
    rng = np.random.default_rng(3)
    scores = rng.normal(size=1000).astype(np.float32)
    exclude = rng.choice(1000, 50, replace=False)
    idx, val = top_k(scores, 20, exclude_indices=exclude)
    masked = scores.copy()
    masked[exclude] = -np.inf
    expected = np.argsort(-masked, kind="stable")[:20]
    assert idx.dtype == np.int64
    assert val.dtype == np.float32
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_array_equal(val, scores[expected])
    assert not set(idx.tolist()) & set(exclude.tolist())
    assert np.all(np.diff(val) <= 0)


def test_top_k_ties_filters_and_short_lists() -> None:
    scores = np.array([1.0, 3.0, 3.0, -np.inf, np.nan, 3.0, 0.5], dtype=np.float32)
    idx, _val = top_k(scores, 2)
    assert idx.tolist() == [1, 2]  # ties broken by ascending index
    idx, _ = top_k(scores, 10)
    assert idx.tolist() == [1, 2, 5, 0, 6]  # -inf and NaN never returned
    idx, _ = top_k(scores, 10, exclude_indices=[1, 5, 99, -1])
    assert idx.tolist() == [2, 0, 6]
    assert top_k(scores, 0)[0].size == 0
    with pytest.raises(ValueError, match="k must"):
        top_k(scores, -1)
