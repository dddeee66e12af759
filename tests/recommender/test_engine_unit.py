"""The pure engine on a small synthetic model: tiers, vectors, filters, campaigns, ANN."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from streamrec_dev.synthetic_model import make_bundle
from streamrec_recommender.runtime.model_handle import prepare
from streamrec_recommender.serving import catalog as catalogs
from streamrec_recommender.serving.context import Context, Job, Request, TrendingMirror
from streamrec_recommender.serving.engine import Engine, Settings
from streamrec_recommender.serving.model import ServingModel
from streamrec_recommender.serving.policy import Experiment, ThompsonBandit, Variant
from streamrec_recommender.serving.ranking import Campaign
from streamrec_recommender.settings import ServingSettings
from streamrec_shared.metrics import RECOMMENDER_ANN_RECALL
from streamrec_shared.profile import UserProfile


@pytest.fixture(scope="module")
def model() -> ServingModel:
    return prepare(make_bundle(n_items=400, n_users=100, n_content_only=5), ServingSettings())


def engine() -> Engine:
    return Engine(Settings(), ThompsonBandit(["als", "itemknn", "content", "hybrid"]),
                  np.random.default_rng(0))  # fmt: skip


def ctx(model: ServingModel | None, **kw: object) -> Context:
    base = Context(
        model=model,
        catalog=None,
        unavailable=frozenset(),
        trending=TrendingMirror(),
        profile=None,
        attributes=None,
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def profile(
    user: str,
    items: tuple[str, ...],
    *,
    purchases: tuple[str, ...] = (),
    events: int = 3,
    vector: np.ndarray | None = None,
    version: int | None = None,
) -> UserProfile:
    return UserProfile(
        user_id=user,
        items=items,
        weights=np.linspace(3.0, 1.0, len(items)).astype(np.float32),
        view_history=items,
        purchase_history=purchases,
        category_affinity={},
        counts={"view": events},
        event_count=events,
        segment="new" if events < 5 else "light",
        vector=vector,
        model_version=version,
        first_event_ts=0.0,
        last_event_ts=1.0,
    )


def ids(result: object) -> list[str]:
    return [p for p, _ in result.items]  # type: ignore[attr-defined]


def test_unknown_user_gets_category_trending_from_attributes(model: ServingModel) -> None:
    res = engine().recommend(
        Request("stranger", 5), ctx(model, attributes={"preferred_category": "toys"})
    )
    assert res.strategy == "cold_start:category_trending:model"
    assert res.algorithm == "popular"
    cat_of = {f"p{i:06d}": i % 8 for i in range(400)}
    assert all(cat_of[p] == 4 for p in ids(res))  # toys is CATEGORIES[4]
    res = engine().recommend(Request("stranger", 5), ctx(model))
    assert res.strategy == "cold_start:trending:model"


def test_live_trending_wins_over_model_popularity(model: ServingModel) -> None:
    trending = TrendingMirror(global_=(("p000007", 9.0), ("p000003", 5.0)), loaded=True)
    res = engine().recommend(Request("stranger", 2), ctx(model, trending=trending))
    assert ids(res) == ["p000007", "p000003"]
    assert res.strategy == "cold_start:trending"


def test_few_events_use_recent_items_and_exclude_purchases(model: ServingModel) -> None:
    prof = profile("newbie", ("p000004", "p000012", "p000020"), purchases=("p000028",))
    res = engine().recommend(Request("newbie", 20), ctx(model, profile=prof))
    assert res.strategy == "recent_items"
    assert "p000028" not in ids(res)
    assert len(res.items) == 20


def test_profile_vector_of_the_same_version_is_used(model: ServingModel) -> None:
    vec = model.user_factors[3]
    prof = profile("u0000003", ("p000001",) * 1, events=60, vector=vec, version=model.version)
    res = engine().recommend(Request("u0000003", 5, "als"), ctx(model, profile=prof))
    assert res.strategy == "profile_vector"
    expected = np.argsort(-(model.item_factors @ vec))[:6]
    got = [model.index_of[p] for p in ids(res)]
    assert set(got) <= set(expected.tolist())


def test_stale_profile_vector_is_refolded_and_trained_factor_is_fallback(
    model: ServingModel,
) -> None:
    prof = profile("u0000003", ("p000001", "p000002"), events=60,
                   vector=np.ones(model.dim, np.float32), version=model.version + 1)  # fmt: skip
    res = engine().recommend(Request("u0000003", 5, "als"), ctx(model, profile=prof))
    assert res.strategy == "fold_in"
    res = engine().recommend(Request("u0000003", 5, "als"), ctx(model))
    assert res.strategy == "model_vector"
    res = engine().recommend(Request("u0000003", 5, "als"), ctx(model, degraded=("redis",)))
    assert res.strategy == "degraded:model_vector"


def test_filters_unavailable_category_and_exclude(model: ServingModel) -> None:
    cat = catalogs.build(model, frozenset({"p000000", "p000008"}), 1, {}, 0)
    res = engine().recommend(
        Request("u0000000", 30, "als", category="books", exclude=("p000016",)),
        ctx(model, catalog=cat, unavailable=frozenset({"p000000", "p000008"})),
    )
    got = ids(res)
    assert got
    assert not {"p000000", "p000008", "p000016"} & set(got)
    assert all(int(p[1:]) % 8 == 0 for p in got)  # books is CATEGORIES[0]


def test_campaign_boost_puts_a_product_on_top(model: ServingModel) -> None:
    base = engine().recommend(Request("u0000001", 5, "als"), ctx(model))
    target = "p000399" if "p000399" not in ids(base) else "p000398"
    camp = Campaign("push", boost=2.0, start=0, end=10, product_ids=(target,))
    res = engine().recommend(Request("u0000001", 5, "als"), ctx(model, campaigns=[camp], now=5.0))
    assert ids(res)[0] == target
    later = engine().recommend(
        Request("u0000001", 5, "als"), ctx(model, campaigns=[camp], now=50.0)
    )
    assert target not in ids(later)


def test_new_product_from_the_content_map_can_be_recommended(model: ServingModel) -> None:
    new = model.item_ids.tolist()[model.n_trained :]
    assert len(new) == 5  # products without interactions, mapped by the content model
    books = tuple(f"p{i:06d}" for i in range(0, 80, 8))  # the category of new[0] (p000400)
    res = engine().recommend(
        Request("reader", 20, "content"), ctx(model, profile=profile("reader", books, events=60))
    )
    assert res.algorithm == "content"
    assert new[0] in ids(res)


def test_experiment_assignment_overrides_the_tiers(model: ServingModel) -> None:
    exp = Experiment("exp1", "running", (Variant("c", "popular", 1), Variant("t", "als", 1)))
    res = engine().recommend(Request("u0000002", 5), ctx(model, experiments=[exp]))
    assert res.experiment == "exp1"
    assert res.variant in {"c", "t"}
    assert res.strategy.startswith("experiment:")
    again = engine().recommend(Request("u0000002", 5), ctx(model, experiments=[exp]))
    assert again.variant == res.variant


def test_no_model_serves_trending_ids() -> None:
    trending = TrendingMirror(global_=(("x", 2.0), ("y", 1.0)), loaded=True)
    res = engine().recommend(Request("someone", 5, exclude=("x",)), ctx(None, trending=trending))
    assert ids(res) == ["y"]
    assert res.strategy == "no_model:trending"


def test_ann_index_recall_is_measured_and_exported(tmp_path: object) -> None:
    pytest.importorskip("usearch")
    settings = ServingSettings(exact_max_items=100, index_cache_dir=str(tmp_path))
    big = prepare(make_bundle(n_items=3000, n_users=200, factors=16, seed=3), settings)
    assert big.ann is not None
    assert big.ann.recall >= 0.9
    assert RECOMMENDER_ANN_RECALL._value.get() == pytest.approx(big.ann.recall)
    res = engine().recommend(Request("u0000005", 20, "als"), ctx(big))
    exact = np.argsort(-(big.item_factors @ big.user_factors[5]))[:20]
    got = [big.index_of[p] for p in ids(res)]
    assert len(set(got) & set(exact.tolist())) >= 17
    again = prepare(make_bundle(n_items=3000, n_users=200, factors=16, seed=3), settings)
    assert again.ann is not None  # mapped from the cache directory this time


def batched(eng: Engine, req: Request, c: Context) -> tuple[Job, int]:
    """What the service's batcher hands the engine: the prepared job with the exact ALS
    candidates at the depth its plan reads (``Recommender._prepare``)."""
    assert c.model is not None
    assert c.model.exact is not None
    job = eng.prepare(req, c)
    if job.depth and job.u is not None and job.flt is not None:
        job.als = c.model.exact.top(job.u[None, :], [job.flt], job.depth)[0]
    return job, job.depth


@pytest.mark.parametrize("algorithm", ["als", "hybrid", "auto", "itemknn", "popular"])
@pytest.mark.parametrize("campaign", [False, True])
def test_candidates_at_the_planned_depth_give_the_same_answer(
    model: ServingModel, algorithm: str, campaign: bool
) -> None:
    camps = [Campaign("push", 0.3, 0, 10, product_ids=("p000003", "p000100"))] if campaign else []
    seen_depths: set[int] = set()
    for n in range(12):
        user = f"u{n:07d}"
        prof = profile(user, ("p000001", "p000009"), purchases=("p000017",), events=30)
        base = ctx(model, profile=prof if n % 2 else None, campaigns=camps, now=5.0)
        req = Request(user, 5, algorithm)
        direct = engine().recommend(req, base)  # the engine scores for itself (full depth)
        job, depth = batched(engine(), req, base)
        seen_depths.add(depth)
        assert engine().answer(job) == direct
    if algorithm == "als":
        assert seen_depths == ({engine().candidates(5)} if campaign else {5})
    if algorithm in ("itemknn", "popular"):
        assert seen_depths == {0}  # nothing scored ahead for algorithms that do not read it


def test_plan_reads_no_candidates_for_tiers_without_a_vector(model: ServingModel) -> None:
    eng = engine()
    nothing = eng.recent(model, None)
    new_user = eng.plan(Request("stranger", 5), ctx(model), model, (None, None), nothing)
    assert (new_user.wanted, new_user.tier) == ("popular", "cold_start")
    assert eng.als_depth(new_user, 5) == 0
    vector = eng.user_vector(model, None, "u0000001")
    hybrid = eng.plan(Request("u0000001", 5, "hybrid"), ctx(model), model, vector, nothing)
    assert eng.als_depth(hybrid, 5) == eng.candidates(5)


def test_live_trending_in_model_space_follows_the_mirror_and_the_model(
    model: ServingModel,
) -> None:
    eng = engine()
    first = TrendingMirror(
        global_=(("p000005", 9.0), ("unknown", 8.0), ("p000002", 7.0)),
        by_category={"books": (("p000008", 3.0),)},
        loaded=True,
    )
    got, source = eng.popular_ranked(ctx(model, trending=first), model, None, 10)
    assert source == "trending"
    assert [str(model.item_ids[i]) for i in got.indices] == ["p000005", "p000002"]
    books, _ = eng.popular_ranked(ctx(model, trending=first), model, "books", 10)
    assert [str(model.item_ids[i]) for i in books.indices] == ["p000008"]
    again, _ = eng.popular_ranked(ctx(model, trending=first), model, None, 1)
    assert again.indices.tolist() == got.indices[:1].tolist()
    # a refresh (a new mirror) is seen by the next request
    second = TrendingMirror(global_=(("p000300", 2.0), ("p000003", 1.0)), loaded=True)
    fresh, _ = eng.popular_ranked(ctx(model, trending=second), model, None, 10)
    assert [str(model.item_ids[i]) for i in fresh.indices] == ["p000300", "p000003"]
    # so is a new model: the same mirror mapped into the other model's item space
    other = prepare(make_bundle(version=2, n_items=50, n_users=10, seed=3), ServingSettings())
    mapped, _ = eng.popular_ranked(ctx(other, trending=second), other, None, 10)
    assert [str(other.item_ids[i]) for i in mapped.indices] == ["p000003"]  # p000300 unknown


def test_category_cold_start_fills_up_to_k(model: ServingModel) -> None:
    # two live toys (CATEGORIES[4]: p000004, p000012, ...), then the model's toys, then global
    trending = TrendingMirror(
        global_=(("p000001", 9.0), ("p000004", 8.0)),
        by_category={"toys": (("p000004", 8.0), ("p000012", 3.0))},
        loaded=True,
    )
    res = engine().recommend(
        Request("stranger", 10, category="toys"), ctx(model, trending=trending)
    )
    assert len(res.items) == 10
    assert ids(res)[:2] == ["p000004", "p000012"]
    assert all(int(p[1:]) % 8 == 4 for p in ids(res))  # the model knows enough toys
    assert res.strategy == "cold_start:category_trending+model_category"
    scores = [s for _, s in res.items]
    assert scores == sorted(scores, reverse=True)
    # an unknown category: nothing in it, filled from global trending, then the model
    res = engine().recommend(Request("stranger", 5, category="nope"), ctx(model, trending=trending))
    assert len(res.items) == 5
    assert ids(res)[:2] == ["p000001", "p000004"]
    assert res.strategy == "cold_start:category_trending+trending+model_popularity"


def test_an_empty_shop_says_why_its_answer_is_empty() -> None:
    res = engine().recommend(
        Request("first-visitor", 5), ctx(None, trending=TrendingMirror(loaded=True))
    )
    assert res.items == []
    assert res.strategy == "no_model:nothing_trending_yet"


# --- EASE served, learned hybrid weights, the few-events tier from the holdout ----------------


def _with_ease(model: ServingModel, neighbours: np.ndarray, weights: np.ndarray) -> ServingModel:
    """``model`` as prepared from a bundle that also ships ``ease.npz``."""
    bundle = make_bundle(n_items=400, n_users=100, n_content_only=5)
    ease = {"neighbours": neighbours, "neighbour_scores": weights, "binary": np.asarray(True)}
    return prepare(dataclasses.replace(bundle, extra_files={"ease": ease}), ServingSettings())


def test_ease_scores_the_users_items_with_the_shipped_weights(model: ServingModel) -> None:
    n = model.n_trained
    rng = np.random.default_rng(3)
    nb = rng.integers(0, n, size=(n, 6)).astype(np.int32)
    w = np.sort(rng.normal(size=(n, 6)).astype(np.float32), axis=1)[:, ::-1].copy()
    served = _with_ease(model, nb, w)
    prof = profile("u0000003", ("p000004", "p000012", "p000020"), events=60)
    res = engine().recommend(Request("u0000003", 5, "ease"), ctx(served, profile=prof))
    assert res.algorithm == "ease"
    # binary: each recent item adds its row of weights once, whatever its profile weight
    total: dict[int, float] = {}
    for item in (4, 12, 20):
        for j, v in zip(nb[item].tolist(), w[item].tolist(), strict=True):
            total[j] = total.get(j, 0.0) + v
    expected = sorted((j for j in total if j not in (4, 12, 20)), key=lambda j: (-total[j], j))
    assert [served.index_of[p] for p in ids(res)] == expected[:5]
    # a whole-history model: it reads every item of the profile, not only the 50 heaviest
    long = profile("u0000003", tuple(f"p{i:06d}" for i in range(100, 160)), events=60)
    strong = w.copy()
    strong[159] = 0.0
    strong[159, 0] = 1e3  # the lightest item of the profile points at one item, strongly
    res = engine().recommend(Request("u0000003", 1, "ease"), ctx(_with_ease(model, nb, strong),
                                                              profile=long))  # fmt: skip
    assert [served.index_of[p] for p in ids(res)] == [int(nb[159, 0])]
    # a bundle without ease.npz (older, or a catalogue above max_items): unavailable, falls back
    res = engine().recommend(Request("u0000003", 5, "ease"), ctx(model, profile=prof))
    assert res.algorithm != "ease"
    assert "ease" not in engine().available(model)
    assert "ease" in engine().available(served)
    # lists that do not fit the model's items are ignored, not served
    broken = _with_ease(model, np.full((n, 6), n + 7, dtype=np.int32), w)
    assert "ease" not in broken.arrays


def test_hybrid_fuses_with_the_weights_the_trainer_chose(model: ServingModel) -> None:
    prof = profile("u0000003", ("p000004", "p000012", "p000020"), events=60)
    only_knn = dataclasses.replace(
        model, hybrid_weights={"als": 0.0, "itemknn": 1.0, "content": 0.0, "popular": 0.0}
    )
    knn = engine().recommend(Request("u0000003", 10, "itemknn"), ctx(model, profile=prof))
    fused = engine().recommend(Request("u0000003", 10, "hybrid"), ctx(only_knn, profile=prof))
    assert fused.algorithm == "hybrid"
    assert ids(fused) == ids(knn)  # one member: its own order
    default = engine().recommend(Request("u0000003", 10, "hybrid"), ctx(model, profile=prof))
    assert ids(default) != ids(knn)  # the registry's weights fuse every member


def test_few_events_tier_follows_the_holdouts_segment_figures(model: ServingModel) -> None:
    prof = profile("u0000003", ("p000004", "p000012", "p000020"), events=3)
    vec = model.user_factors[3]
    prof = dataclasses.replace(prof, vector=vec, model_version=model.version)
    res = engine().recommend(Request("u0000003", 10), ctx(model, profile=prof))
    assert res.strategy == "recent_items"  # no segment figures: the tier
    figures = {"sknn": {"ndcg@20": 0.05}, "hybrid": {"ndcg@20": 0.09}, "als": {"ndcg@20": 0.08}}
    ranked = dataclasses.replace(model, offline_metrics={"segments": {"new": figures}})
    eng = Engine(Settings(), ThompsonBandit(["als", "hybrid", "sknn"]), np.random.default_rng(0))
    answered = [
        eng.recommend(Request("u0000003", 10), ctx(ranked, profile=prof)) for _ in range(20)
    ]
    # the bandit draws from the new users' figures: session kNN (the tier's lead) is an arm
    assert all(r.algorithm in ("als", "hybrid", "sknn") for r in answered)
    assert {r.strategy for r in answered if r.algorithm != "sknn"} == {"profile_vector"}
    other = dataclasses.replace(model, offline_metrics={"segments": {"light": figures}})
    res = eng.recommend(Request("u0000003", 10), ctx(other, profile=prof))
    assert res.strategy == "recent_items"  # figures for other segments only: the tier
