"""Items the user already had: the model's measured rule by default, ``include_seen`` overrides
it (the one request definition, so the route and the fast path read it alike)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from streamrec_dev.synthetic_model import make_bundle
from streamrec_recommender.api.request import RecommendationQuery, parse
from streamrec_recommender.runtime.model_handle import prepare
from streamrec_recommender.serving.context import Context, Request, TrendingMirror
from streamrec_recommender.serving.engine import Engine, Settings
from streamrec_recommender.serving.model import SeenRule, ServingModel
from streamrec_recommender.serving.policy import ThompsonBandit
from streamrec_recommender.settings import ServingSettings
from streamrec_shared.profile import UserProfile


@pytest.fixture(scope="module")
def base() -> ServingModel:
    return prepare(make_bundle(n_items=300, n_users=50), ServingSettings())


def _engine() -> Engine:
    return Engine(Settings(), ThompsonBandit(["als", "itemknn"]), np.random.default_rng(0))


def _ask(model: ServingModel, include_seen: bool | None = None) -> tuple[list[str], list[str]]:
    """(the user's 3 best ALS items, which the profile holds as seen; the answer's ids)."""
    vec = model.user_factors[3]
    best = [str(model.item_ids[i]) for i in np.argsort(-(model.item_factors @ vec))[:3]]
    prof = UserProfile(
        user_id="u0000003", items=tuple(best), weights=np.ones(3, np.float32),
        view_history=tuple(best), purchase_history=(), category_affinity={},
        counts={"view": 60}, event_count=60, segment="light", vector=vec,
        model_version=model.version, first_event_ts=0.0, last_event_ts=1.0,
    )  # fmt: skip
    ctx = Context(model, None, frozenset(), TrendingMirror(), prof, None)
    req = Request("u0000003", 10, "als", include_seen=include_seen)
    res = _engine().recommend(req, ctx)
    return best, [p for p, _ in res.items]


def _with(model: ServingModel, mode: str | None, factor: float = 0.0) -> ServingModel:
    rule = None if mode is None else SeenRule(mode, factor)
    return dataclasses.replace(model, seen=rule)


def test_the_model_rule_excludes_or_keeps_seen_items(base: ServingModel) -> None:
    seen, got = _ask(_with(base, "exclude"))
    assert not set(seen) & set(got)
    seen, got = _ask(_with(base, "keep"))
    assert got[:3] == seen  # ranked like any item: the best ones first
    # without a rule (an older bundle) viewed items are shown, as before
    seen, got = _ask(_with(base, None))
    assert got[:3] == seen


def test_downweight_moves_seen_items_down(base: ServingModel) -> None:
    seen, got = _ask(_with(base, "downweight", 0.01))
    assert got[0] not in seen
    assert len(got) == 10


def test_include_seen_overrides_the_rule(base: ServingModel) -> None:
    seen, got = _ask(_with(base, "exclude"), include_seen=True)
    assert got[:3] == seen
    seen, got = _ask(_with(base, "keep"), include_seen=False)
    assert not set(seen) & set(got)


def test_include_seen_is_part_of_the_one_request_definition() -> None:
    assert parse("/v1/recommendations/u1", b"include_seen=true") == Request("u1", include_seen=True)
    assert parse("/v1/recommendations/u1", b"include_seen=false&k=3").include_seen is False  # type: ignore[union-attr]
    assert parse("/v1/recommendations/u1", b"k=3").include_seen is None  # type: ignore[union-attr]
    assert parse("/v1/recommendations/u1", b"include_seen=maybe") is None  # the route's 422
    assert "include_seen" in RecommendationQuery.model_json_schema()["properties"]


def test_seen_rule_is_read_from_the_bundle() -> None:
    assert SeenRule.from_extra({"mode": "downweight", "factor": 0.4, "share": 0.1}) == SeenRule(
        "downweight", 0.4, 0.1
    )
    assert SeenRule.from_extra({"mode": "nonsense"}) is None
    assert SeenRule.from_extra(None) is None


def test_bought_items_follow_their_own_rule(base: ServingModel) -> None:
    vec = base.user_factors[3]
    best = [str(base.item_ids[i]) for i in np.argsort(-(base.item_factors @ vec))[:3]]
    prof = UserProfile(
        user_id="u0000003", items=tuple(best), weights=np.ones(3, np.float32),
        view_history=tuple(best), purchase_history=(best[0],), category_affinity={},
        counts={"view": 60}, event_count=60, segment="light", vector=vec,
        model_version=base.version, first_event_ts=0.0, last_event_ts=1.0,
    )  # fmt: skip
    # viewed items are kept (people come back to them), bought ones are not bought twice
    model = dataclasses.replace(base, seen=SeenRule("keep", 1.0, purchased_mode="exclude"))
    ctx = Context(model, None, frozenset(), TrendingMirror(), prof, None)
    got = [p for p, _ in _engine().recommend(Request("u0000003", 10, "als"), ctx).items]
    assert best[0] not in got
    assert got[:2] == best[1:]
    rule = SeenRule.from_extra({"mode": "keep", "purchased": {"mode": "downweight", "factor": 0.5}})
    assert rule is not None
    assert (rule.purchased_mode, rule.purchased_factor) == ("downweight", 0.5)
    older = SeenRule.from_extra({"mode": "keep"})
    assert older is not None
    assert older.purchased_mode == "exclude"
