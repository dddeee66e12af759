"""Pure ranking: filters, candidates, blending, campaign boosts."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec_recommender.serving import ranking
from streamrec_recommender.serving.ranking import Campaign, ItemFilter, Ranked


def test_ranked_of_sorts_best_first_ties_by_index_and_drops_neg_inf() -> None:
    r = Ranked.of([5, 1, 3, 2], [0.5, 0.9, 0.5, -np.inf])
    assert r.indices.tolist() == [1, 3, 5]
    assert r.scores.tolist() == pytest.approx([0.9, 0.5, 0.5])


def test_filter_blocks_excludes_and_restricts_category() -> None:
    blocked = np.zeros(6, dtype=bool)
    blocked[2] = True
    allowed = np.array([True, True, True, True, False, True])
    flt = ItemFilter.build(blocked=blocked, allowed=allowed, exclude=[0, 0, -1])
    assert flt.keep(np.arange(6)).tolist() == [False, True, False, True, False, True]
    scores = np.arange(6, dtype=np.float32)
    top = ranking.top_candidates(scores, 10, flt)
    assert top.indices.tolist() == [5, 3, 1]


def test_top_candidates_returns_exactly_the_best_c() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=1000).astype(np.float32)
    expected = np.argsort(-scores)[:7]
    got = ranking.top_candidates(scores.copy(), 7, ItemFilter())
    assert got.indices.tolist() == expected.tolist()


def test_neighbour_scores_sum_weighted_similarities() -> None:
    neighbours = np.array([[1, 2], [2, -1], [0, 1]], dtype=np.int32)
    sims = np.array([[0.9, 0.5], [0.4, 0.0], [0.3, 0.2]], dtype=np.float32)
    r = ranking.neighbour_scores(
        neighbours, sims, np.array([0, 1]), np.array([1.0, 2.0], dtype=np.float32)
    )
    got = dict(zip(r.indices.tolist(), r.scores.tolist(), strict=True))
    assert got == pytest.approx({1: 0.9, 2: 0.5 + 0.8})
    assert r.indices.tolist()[0] == 2


def _random_lists(
    seed: int, n_recent: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """4 random neighbour lists (-1 = none) of each of 1,000 items with their similarities, and
    ``n_recent`` distinct recent items with weights."""
    rng = np.random.default_rng(seed)
    neighbours = rng.integers(-1, 1000, size=(1000, 4)).astype(np.int32)
    sims = rng.normal(size=(1000, 4)).astype(np.float32)
    recent = rng.choice(1000, size=n_recent, replace=False).astype(np.int64)
    weights = rng.random(n_recent).astype(np.float32)
    return neighbours, sims, recent, weights


@pytest.mark.parametrize("n_recent", [2, 300])
def test_neighbour_scores_dense_and_sorted_sums_agree(n_recent: int) -> None:
    # 2 recent items x 4 neighbours in 1,000 items: sorted entries; 300 x 4: a dense sum
    neighbours, sims, recent, weights = _random_lists(7, n_recent)
    expected: dict[int, float] = {}
    for i, w in zip(recent.tolist(), weights.tolist(), strict=True):
        for j, s in zip(neighbours[i].tolist(), sims[i].tolist(), strict=True):
            if j >= 0:
                expected[j] = expected.get(j, 0.0) + w * s
    r = ranking.neighbour_scores(neighbours, sims, recent, weights)
    assert dict(zip(r.indices.tolist(), r.scores.tolist(), strict=True)) == pytest.approx(
        expected, abs=1e-5
    )
    assert r.indices.tolist() == sorted(expected, key=lambda j: (-np.float32(expected[j]), j))


def test_rank_fusion_rewards_agreement() -> None:
    a = Ranked.of([1, 2, 3], [3.0, 2.0, 1.0])
    b = Ranked.of([2, 4], [1.0, 0.5])
    fused = ranking.rank_fusion([(a, 1.0), (b, 1.0)])
    assert fused.indices.tolist()[0] == 2


def test_blend_weights_normalised_scores() -> None:
    primary = Ranked.of([1, 2], [10.0, 0.0])
    secondary = Ranked.of([3, 2], [5.0, 0.0])
    out = ranking.blend(primary, secondary, 0.3)
    got = dict(zip(out.indices.tolist(), out.scores.tolist(), strict=True))
    assert got == pytest.approx({1: 0.7, 2: 0.0, 3: 0.3})


def test_campaign_window_segment_and_max_boost() -> None:
    index_of = {"a": 0, "b": 1, "c": 2}
    cats = {"toys": np.array([1, 2], dtype=np.int64)}
    campaigns = [
        Campaign("c1", 0.5, start=100, end=200, product_ids=("a", "zz")),
        Campaign("c2", 0.2, start=100, end=200, categories=("toys",)),
        Campaign("c3", 0.9, start=100, end=200, product_ids=("b",), segment="heavy"),
        Campaign("late", 2.0, start=300, end=400, product_ids=("c",)),
    ]
    idx, boost = ranking.campaign_boosts(
        campaigns, now=150, segment="new", index_of=index_of, category_items=cats
    )
    assert dict(zip(idx.tolist(), boost.tolist(), strict=True)) == pytest.approx(
        {0: 0.5, 1: 0.2, 2: 0.2}
    )
    idx, boost = ranking.campaign_boosts(
        campaigns, now=150, segment="heavy", index_of=index_of, category_items=cats
    )
    assert dict(zip(idx.tolist(), boost.tolist(), strict=True))[1] == pytest.approx(0.9)


def test_apply_boosts_lifts_an_item_from_outside_the_candidates() -> None:
    cands = Ranked.of([1, 2, 3], [1.0, 0.5, 0.0])
    out = ranking.apply_boosts(
        cands, np.array([9], dtype=np.int64), np.array([1.5], dtype=np.float32)
    )
    assert out.indices.tolist()[0] == 9
    unboosted = ranking.apply_boosts(cands, np.empty(0, dtype=np.int64), np.empty(0, np.float32))
    assert unboosted is cands


def test_weighted_mean_ignores_out_of_range() -> None:
    vecs = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    mean = ranking.weighted_mean(vecs, np.array([0, 1, 7]), np.array([3.0, 1.0, 5.0], np.float32))
    assert mean is not None
    assert mean.tolist() == pytest.approx([0.75, 0.25])
    assert ranking.weighted_mean(vecs, np.array([5]), np.array([1.0], np.float32)) is None


@pytest.mark.parametrize("n", [50, 5000, 60_000])
def test_exact_scorer_matches_brute_force_under_filters(n: int) -> None:
    rng = np.random.default_rng(n)
    factors = (rng.normal(size=(n, 16)) * rng.gamma(2.0, 0.5, size=(n, 1))).astype(np.float32)
    queries = rng.normal(size=(6, 16)).astype(np.float32)
    queries[5] = -queries[4]  # a query whose best scores may all be negative
    blocked = rng.random(n) < 0.05
    allowed = rng.random(n) < 0.5
    exclude = rng.integers(0, n, size=30)
    filters = [
        ItemFilter(),
        ItemFilter.build(blocked=blocked, blocked_idx=np.flatnonzero(blocked), exclude=exclude),
        ItemFilter.build(blocked=blocked, exclude=exclude),  # no blocked_idx
        ItemFilter.build(blocked=blocked[: n // 2], blocked_idx=np.flatnonzero(blocked[: n // 2])),
        ItemFilter.build(allowed=allowed, exclude=exclude),
        ItemFilter.build(blocked=blocked, blocked_idx=np.flatnonzero(blocked)),
    ]
    scorer = ranking.ExactScorer.build(factors)
    per_query = [10, 100, 1, 40, 7, 25]  # one count per query (a batch of mixed requests)
    cases = [(1, 6), (40, 6), (40, 2), (per_query, 6), (per_query[:2], 2)]
    for c, batch in cases:  # 2 queries: matrix-vector products
        got = scorer.top(queries[:batch], filters[:batch], c)
        counts = [c] * batch if isinstance(c, int) else c
        assert len(got) == batch
        for q, flt, count, ranked in zip(queries, filters, counts, got, strict=False):
            want = ranking.top_candidates(factors @ q, count, flt)
            assert ranked.indices.tolist() == want.indices.tolist()
            assert ranked.scores == pytest.approx(want.scores, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("b", [1, 3, 4, 9])
def test_products_are_the_inner_products_in_query_major_order(b: int) -> None:
    rng = np.random.default_rng(b)
    block = rng.normal(size=(300, 16)).astype(np.float32)
    queries = rng.normal(size=(b, 16)).astype(np.float32)
    got = ranking.products(queries, block)
    assert got.shape == (b, 300)
    assert got.dtype == np.float32
    assert got.flags.c_contiguous
    assert got == pytest.approx(queries @ block.T, rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("n_recent", [2, 300])
def test_neighbour_candidates_are_the_filtered_head_of_the_scores(n_recent: int) -> None:
    # 2 recent items: the sorted path; 300: the dense sum cut by top_candidates
    neighbours, sims, recent, weights = _random_lists(8, n_recent)
    blocked = np.zeros(1000, dtype=np.bool_)
    blocked[::3] = True
    flt = ItemFilter.build(blocked=blocked, exclude=recent.tolist())
    full = flt.apply(ranking.neighbour_scores(neighbours, sims, recent, weights))
    got = ranking.neighbour_candidates(neighbours, sims, recent, weights, 5, flt)
    assert got.indices.tolist() == full.indices[:5].tolist()
    np.testing.assert_allclose(got.scores, full.scores[:5], rtol=1e-6)
