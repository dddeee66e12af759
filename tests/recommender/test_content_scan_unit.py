"""The int8-first exact scan of the content vectors (``serving.quantised``): the same top c as
the float32 scan, under filters, with products appended after the build, and switched on by
``content_scan_min_items`` only in the exact regime."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from numpy.typing import NDArray

from streamrec_dev import synthetic
from streamrec_dev.synthetic_model import make_bundle
from streamrec_recommender.runtime.model_handle import prepare
from streamrec_recommender.serving import newitems, ranking
from streamrec_recommender.serving.context import Context, Request, TrendingMirror
from streamrec_recommender.serving.engine import Engine, Settings
from streamrec_recommender.serving.newitems import Product
from streamrec_recommender.serving.policy import ThompsonBandit
from streamrec_recommender.serving.quantised import QuantisedScan
from streamrec_recommender.serving.ranking import ItemFilter, Ranked
from streamrec_recommender.settings import ServingSettings
from streamrec_shared.profile import UserProfile
from streamrec_trainer.dataset import Dataset, Interactions, catalog_from_records
from streamrec_trainer.models import AlsParams, TrainParams, fit_all


def unit_rows(n: int, f: int, seed: int, clusters: int = 0) -> NDArray[np.float32]:
    """(n, f) float32 L2-normalised rows: isotropic, or around ``clusters`` centres."""
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n, f))
    if clusters:
        rows = rng.normal(size=(clusters, f))[rng.integers(0, clusters, n)] * 2.0 + rows
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows.astype(np.float32)


def exact(
    rows: NDArray[np.float32], items: NDArray[np.int64], n: int, q: NDArray[np.float32], c: int,
    flt: ItemFilter,
) -> Ranked:  # fmt: skip
    """The float32 scan ``content`` runs without the int8 copy."""
    scores = np.full(n, ranking.NEG_INF, dtype=np.float32)
    scores[items] = rows @ q
    return ranking.top_candidates(scores, c, flt)


def assert_same(got: Ranked, want: Ranked) -> None:
    assert got.indices.tolist() == want.indices.tolist()
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("clusters", [0, 8])
def test_the_error_bound_holds_for_every_row(clusters: int) -> None:
    rows = unit_rows(5000, 32, seed=1, clusters=clusters)
    scan = QuantisedScan.build(rows)
    rng = np.random.default_rng(2)
    queries = [rows[rng.integers(0, 5000, 2)].mean(axis=0), rng.normal(size=32) * 3.0]
    for q in queries:
        q = q.astype(np.float32)
        approx, err = scan.approximate(q)
        assert np.abs(approx - rows @ q).max() <= err
        assert err < 0.1 * float(np.linalg.norm(q))  # tight enough to prune


@pytest.mark.parametrize("clusters", [0, 8])
@pytest.mark.parametrize("c", [1, 10, 100])
def test_top_equals_the_float32_scan(clusters: int, c: int) -> None:
    n_items = 6000
    rows = unit_rows(5000, 32, seed=3, clusters=clusters)
    rng = np.random.default_rng(4)
    items = np.sort(rng.choice(n_items, size=5000, replace=False)).astype(np.int64)
    scan = QuantisedScan.build(rows)
    blocked = rng.random(n_items) < 0.3
    filters = [
        ItemFilter.build(),
        ItemFilter.build(blocked=blocked, exclude=items[rng.integers(0, 5000, 40)].tolist()),
        ItemFilter.build(allowed=rng.random(n_items) < 0.02),  # heavily filtered
    ]
    for _ in range(20):
        # Like a context request's query: two products, weighted (equal weights would tie
        # the two, whose order is then up to float rounding).
        pair = rows[rng.integers(0, 5000, 2)]
        q = (0.6 * pair[0] + 0.4 * pair[1]).astype(np.float32)
        for flt in filters:
            assert_same(scan.top(q, c, flt, rows, items), exact(rows, items, n_items, q, c, flt))


def test_many_products_sharing_a_vector() -> None:
    """Content made of the category alone: whole categories tie, the scan scores them all."""
    centres = unit_rows(3, 16, seed=12)
    rows = centres[np.arange(6000) % 3]
    items = np.arange(6000, dtype=np.int64)
    flt = ItemFilter.build(exclude=[0, 3])
    q = (0.7 * centres[0] + 0.3 * centres[1]).astype(np.float32)
    got = QuantisedScan.build(rows).top(q, 100, flt, rows, items)
    want = exact(rows, items, 6000, q, 100, flt)
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, atol=1e-6)
    assert set(got.indices.tolist()) <= set(range(6, 6000, 3))  # the best category, filtered
    assert len(got) == 100


def test_fewer_items_pass_than_asked() -> None:
    rows = unit_rows(2000, 16, seed=5)
    items = np.arange(2000, dtype=np.int64)
    allowed = np.zeros(2000, dtype=np.bool_)
    allowed[[7, 70, 700]] = True
    got = QuantisedScan.build(rows).top(
        rows[70], 10, ItemFilter.build(allowed=allowed), rows, items
    )
    assert sorted(got.indices.tolist()) == [7, 70, 700]
    assert got.indices[0] == 70
    nothing = ItemFilter.build(allowed=np.zeros(2000, dtype=np.bool_))
    assert len(QuantisedScan.build(rows).top(rows[0], 10, nothing, rows, items)) == 0


def test_rows_appended_after_the_build_are_scored_exactly() -> None:
    rows = unit_rows(3000, 16, seed=6)
    scan = QuantisedScan.build(rows)
    q = rows[5]
    grown = np.concatenate([rows, q[None, :], -q[None, :]]).astype(np.float32)
    items = np.arange(3002, dtype=np.int64)
    got = scan.top(q, 5, ItemFilter.build(), grown, items)
    assert_same(got, exact(grown, items, 3002, q, 5, ItemFilter.build()))
    assert set(got.indices[:2].tolist()) == {5, 3000}  # the copy of row 5 ties with it
    assert 3001 not in got.indices


def model_settings(**kw: object) -> ServingSettings:
    return ServingSettings(content_scan_min_items=100, **kw)  # type: ignore[arg-type]


def test_the_scan_is_built_from_the_threshold_on_and_only_for_exact_scoring(
    tmp_path: object,
) -> None:
    bundle = make_bundle(n_items=400, n_users=50, n_content_only=5, seed=7)
    assert prepare(bundle, model_settings()).content_scan is not None
    assert prepare(bundle, ServingSettings(content_scan_min_items=406)).content_scan is None
    pytest.importorskip("usearch")
    big = prepare(bundle, model_settings(exact_max_items=100, index_cache_dir=str(tmp_path)))
    assert big.ann is not None
    assert big.content_scan is None


def fan(items: tuple[str, ...]) -> UserProfile:
    return UserProfile(
        user_id="fan", items=items, weights=np.linspace(3.0, 1.0, len(items)).astype(np.float32),
        view_history=items, purchase_history=(), category_affinity={}, counts={"view": 60},
        event_count=60, first_event_ts=0.0, last_event_ts=1.0, vector=None, model_version=None,
        segment="heavy",
    )  # fmt: skip


def test_content_answers_the_same_with_and_without_the_scan() -> None:
    bundle = make_bundle(n_items=3000, n_users=50, n_content_only=20, seed=8)
    scanned = prepare(bundle, model_settings())
    plain = prepare(bundle, ServingSettings())
    assert scanned.content_scan is not None
    assert plain.content_scan is None
    content_only = set(scanned.item_ids[scanned.n_trained :].tolist())
    engine = Engine(Settings(), ThompsonBandit(["content"]), np.random.default_rng(0))
    rng = np.random.default_rng(9)
    reached = set()
    for _ in range(30):
        recent = tuple(f"p{i:06d}" for i in rng.integers(0, 3020, 3))
        answers = []
        for model in (scanned, plain):
            ctx = Context(
                model=model, catalog=None, unavailable=frozenset(), trending=TrendingMirror(),
                profile=fan(recent), attributes=None,
            )  # fmt: skip
            req = Request("fan", 20, "content", exclude=recent[:1], context=recent[1:])
            answers.append(engine.recommend(req, ctx))
        assert answers[0].algorithm == "content"
        assert [p for p, _ in answers[0].items] == [p for p, _ in answers[1].items]
        reached |= content_only & {p for p, _ in answers[0].items}
    assert reached  # products known only to the content model are found too


def test_a_product_added_after_the_build_is_found_through_the_scan() -> None:
    shop = synthetic.shop(n_users=60, n_products=120, events_per_user=15, seed=11)
    data = Dataset(Interactions.from_records(shop.events), catalog_from_records(shop.products))
    params = TrainParams(als=AlsParams(factors=16, iterations=5, num_threads=1))
    model = prepare(fit_all(data, params).to_bundle(1), ServingSettings(content_scan_min_items=1))
    assert model.content_map is not None
    assert model.content_scan is not None
    raw = shop.products[10]
    fields = {k: raw[k] for k in ("product_id", "name", "category", "price", "attributes")}
    new = Product(**{**fields, "product_id": "brand-new", "name": f"{raw['name']} deluxe"})  # type: ignore[arg-type]
    extended = newitems.extend(model, [new], model.content_map)
    assert extended.content_scan is model.content_scan  # built once per model version
    i = extended.index_of["brand-new"]
    near = newitems.content_neighbours(extended, i, 5)
    want = newitems.content_neighbours(dataclasses.replace(extended, content_scan=None), i, 5)
    assert near.indices.tolist()[:2] == [i, extended.index_of[str(raw["product_id"])]]
    np.testing.assert_allclose(near.scores, want.scores, rtol=1e-5, atol=1e-6)

    ctx = Context(
        model=extended, catalog=None, unavailable=frozenset(), trending=TrendingMirror(),
        profile=fan((str(raw["product_id"]),)), attributes=None,
    )  # fmt: skip
    engine = Engine(Settings(), ThompsonBandit(["content"]), np.random.default_rng(0))
    res = engine.recommend(Request("fan", 10, "content"), ctx)
    assert "brand-new" in [p for p, _ in res.items]
