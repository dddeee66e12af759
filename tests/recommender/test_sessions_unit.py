"""Session-aware serving, pure: ``context=``, read-your-writes events and ``sknn`` in the engine;
the request definition reads ``context``; V-SKNN scoring."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from streamrec_dev.synthetic_model import make_bundle
from streamrec_recommender.api.request import parse
from streamrec_recommender.runtime.model_handle import prepare
from streamrec_recommender.serving.context import Context, Request, TrendingMirror
from streamrec_recommender.serving.engine import Engine, Settings
from streamrec_recommender.serving.model import ServingModel
from streamrec_recommender.serving.policy import ThompsonBandit
from streamrec_recommender.settings import ServingSettings
from streamrec_shared import recent_events, session_knn
from streamrec_shared.profile import UserProfile

N_ITEMS = 400


def session_index(n_items: int) -> session_knn.SessionIndex:
    """Sessions {j, j+8, j+16}: each product's session neighbours are 8 and 16 apart."""
    starts = np.arange(n_items - 16)
    sessions = np.repeat(np.arange(starts.size), 3)
    items = (starts[:, None] + np.array([0, 8, 16])).reshape(-1)
    return session_knn.build_index(sessions, items, n_items, sample=50)


@pytest.fixture(scope="module")
def model() -> ServingModel:
    bundle = make_bundle(n_items=N_ITEMS, n_users=100)
    bundle = dataclasses.replace(bundle, extra_files={"sknn": session_index(N_ITEMS).arrays()})
    return prepare(bundle, ServingSettings())


def engine() -> Engine:
    arms = ["als", "itemknn", "content", "hybrid", "sknn"]
    return Engine(Settings(), ThompsonBandit(arms), np.random.default_rng(0))


def ctx(model: ServingModel, **kw: object) -> Context:
    base = Context(
        model=model, catalog=None, unavailable=frozenset(), trending=TrendingMirror(),
        profile=None, attributes=None,
    )  # fmt: skip
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def profile(user: str, items: tuple[str, ...], *, events: int, span_s: float) -> UserProfile:
    return UserProfile(
        user_id=user, items=items, weights=np.linspace(3.0, 1.0, len(items)).astype(np.float32),
        view_history=items, purchase_history=(), category_affinity={}, counts={"view": events},
        event_count=events, segment="new" if events < 5 else "light", vector=None,
        model_version=None, first_event_ts=1000.0, last_event_ts=1000.0 + span_s,
    )  # fmt: skip


def ids(result: object) -> list[str]:
    return [p for p, _ in result.items]  # type: ignore[attr-defined]


def test_context_alone_gives_an_unknown_user_the_neighbours_of_the_context_items(
    model: ServingModel,
) -> None:
    cold = engine().recommend(Request("stranger", 10), ctx(model))
    assert cold.strategy.startswith("cold_start")
    res = engine().recommend(Request("stranger", 10, context=("p000100",)), ctx(model))
    assert (res.strategy, res.algorithm) == ("recent_items", "sknn")
    # session neighbours of p000100: p000092, p000108 (shared sessions), p000084, p000116
    assert set(ids(res)[:4]) == {"p000092", "p000108", "p000084", "p000116"}
    assert "p000100" not in ids(res)


def test_read_your_writes_events_count_before_the_profile_has_them(model: ServingModel) -> None:
    clicked = (recent_events.RecentEvent("p000200", "click", 2000.0),)
    res = engine().recommend(Request("fresh"), ctx(model, recent_events=clicked))
    assert res.strategy == "recent_items"
    assert {"p000192", "p000208"} <= set(ids(res)[:2])
    # the profile catches up: same answer source, the event is not counted twice
    prof = profile("fresh", ("p000200",), events=1, span_s=0.0)
    job = engine().prepare(Request("fresh"), ctx(model, profile=prof, recent_events=clicked))
    assert job.recent[0].tolist() == [model.index_of["p000200"]]
    assert job.plan.tier == "recent_items"


def test_the_latest_item_leads_the_session(model: ServingModel) -> None:
    prof = profile("shopper", ("p000010", "p000300"), events=2, span_s=60.0)
    clicked = (recent_events.RecentEvent("p000150", "view", 2000.0),)
    req = Request("shopper", 10, context=("p000050",))
    job = engine().prepare(req, ctx(model, profile=prof, recent_events=clicked))
    want = ["p000050", "p000150", "p000010", "p000300"]
    assert job.session.tolist() == [model.index_of[p] for p in want]
    res = engine().answer(job)
    assert ids(res)[0] in {"p000042", "p000058"}  # the context item's session neighbours


def test_a_session_only_user_stays_on_the_recent_items_tier(model: ServingModel) -> None:
    items = tuple(f"p{i:06d}" for i in range(40, 200, 8))  # 20 events, one session
    short = profile("visitor", items, events=20, span_s=600.0)
    job = engine().prepare(Request("visitor"), ctx(model, profile=short))
    assert job.plan.tier == "recent_items"
    assert engine().answer(job).algorithm == "sknn"
    long = profile("visitor", items, events=20, span_s=5 * 86_400.0)
    job = engine().prepare(Request("visitor"), ctx(model, profile=long))
    assert job.plan.tier is None  # the bandit's choice


def test_context_is_read_by_the_one_request_definition() -> None:
    req = parse("/v1/recommendations/u1", b"k=3&context=p1,%20p2,,p3")
    assert req is not None
    assert req.context == ("p1", "p2", "p3")
    long = ",".join(f"p{i}" for i in range(50)).encode()
    req = parse("/v1/recommendations/u1", b"context=" + long)
    assert req is not None
    assert len(req.context) == 20
    assert parse("/v1/recommendations/u1", b"context=" + b"x" * 5000) is None  # route: 422


def test_vsknn_weights_the_most_recent_item_most() -> None:
    # sessions: {0, 1}, {0, 2}, {3, 2}; current session: 3 (most recent), then 0
    index = session_knn.build_index(
        np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 0, 2, 3, 2]), 4, sample=10
    )
    cand, scores = session_knn.score(index, np.array([3, 0]))
    found = dict(zip(cand.tolist(), scores.tolist(), strict=True))
    # item 2 shares a session with 3 (weight 1) and one with 0 (weight 1/2); 1 only with 0
    assert found[2] == pytest.approx(1.5)
    assert found[1] == pytest.approx(0.5)
    assert session_knn.position_weights(4).tolist() == [1.0, 0.75, 0.5, 0.25]


def test_recent_event_entries_round_trip() -> None:
    raw = recent_events.encode("p\t1", "click", 12.5)
    assert recent_events.decode(raw) == ("p\t1", "click", 12.5)
    assert recent_events.decode_all([raw, b"junk"]) == (("p\t1", "click", 12.5),)
