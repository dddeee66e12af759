"""New products placed in the served model's space by the trainer's content map (no retrain).

A real (small) model is fitted with the trainer's code, so the serving side's ``ContentMap`` is
checked against the trainer's own featuriser and ridge map: a catalogue product gets the same
factor from either side, and a product that arrives after training is found by ``/similar``'s
live neighbours, by content answers and marked ``new_product``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from streamrec_dev import synthetic
from streamrec_recommender.runtime.model_handle import prepare
from streamrec_recommender.serving import newitems
from streamrec_recommender.serving.context import Context, Request, TrendingMirror
from streamrec_recommender.serving.engine import Engine, Settings
from streamrec_recommender.serving.model import ServingModel
from streamrec_recommender.serving.newitems import Product
from streamrec_recommender.serving.policy import ThompsonBandit
from streamrec_recommender.settings import ServingSettings
from streamrec_shared.artifacts import ModelBundle
from streamrec_shared.profile import UserProfile
from streamrec_trainer.dataset import Dataset, Interactions, catalog_from_records
from streamrec_trainer.models import AlsParams, TrainParams, fit_all

SHOP = synthetic.shop(n_users=80, n_products=160, events_per_user=20, seed=5)


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    interactions = Interactions.from_records(SHOP.events)
    data = Dataset(interactions, catalog_from_records(SHOP.products))
    params = TrainParams(als=AlsParams(factors=16, iterations=5, num_threads=1))
    return fit_all(data, params).to_bundle(1)


@pytest.fixture(scope="module")
def model(bundle: ModelBundle) -> ServingModel:
    return prepare(bundle, ServingSettings())


def product(raw: dict[str, object], **changes: object) -> Product:
    fields = {k: raw[k] for k in ("product_id", "name", "category", "price", "attributes")}
    return Product(description=str(raw.get("description", "")), **{**fields, **changes})  # type: ignore[arg-type]


def test_serving_content_map_reproduces_the_trainers_factors(
    bundle: ModelBundle, model: ServingModel
) -> None:
    assert bundle.content is not None
    assert model.content_map is not None
    row = {p: j for j, p in enumerate(bundle.content.item_ids.tolist())}
    for raw in SHOP.products[:40]:
        got = model.content_map.factor(product(raw))
        assert got is not None
        want = bundle.content.item_factors[row[str(raw["product_id"])]]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_a_new_product_joins_similar_and_content_answers(model: ServingModel) -> None:
    assert model.content_map is not None
    related = SHOP.products[10]
    new = product(related, product_id="brand-new-1", name=f"{related['name']} deluxe")
    unrelated = product(SHOP.products[11], product_id="brand-new-2", active=False)
    extended = newitems.extend(model, [new, unrelated], model.content_map)
    assert extended is not model
    assert extended.version == model.version
    assert extended.n_items == model.n_items + 1  # inactive products are not placed
    assert extended.live_items == frozenset({"brand-new-1"})
    assert newitems.extend(extended, [new], model.content_map) is extended  # known now

    i = extended.index_of[str(related["product_id"])]
    live = newitems.similar_live(extended, i, 10)
    assert [extended.item_ids[j] for j, _ in live] == ["brand-new-1"]
    assert live[0][1] > 0.9

    recent = (str(related["product_id"]),)
    prof = UserProfile(
        user_id="fan", items=recent, weights=np.ones(1, dtype=np.float32), view_history=recent,
        purchase_history=(), category_affinity={}, counts={}, event_count=40,
        first_event_ts=0.0, last_event_ts=0.0, vector=None, model_version=None, segment="heavy",
    )  # fmt: skip
    ctx = Context(
        model=extended, catalog=None, unavailable=frozenset(), trending=TrendingMirror(),
        profile=prof, attributes=None,
    )  # fmt: skip
    engine = Engine(Settings(), ThompsonBandit(["als"]), np.random.default_rng(0))
    res = engine.recommend(Request("fan", 10, "content"), ctx)
    assert "brand-new-1" in [p for p, _ in res.items]
    assert res.strategy.endswith(":new_product")
    old = engine.recommend(Request("fan", 10, "content"), dataclasses.replace(ctx, model=model))
    assert not old.strategy.endswith(":new_product")


def test_a_new_products_own_neighbours_are_found_by_content(model: ServingModel) -> None:
    assert model.content_map is not None
    related = SHOP.products[20]
    new = product(related, product_id="brand-new-3", name=f"{related['name']} two")
    extended = newitems.extend(model, [new], model.content_map)
    near = newitems.content_neighbours(extended, extended.index_of["brand-new-3"], 3)
    assert [str(extended.item_ids[j]) for j in near.indices[:2]] == [
        "brand-new-3",
        str(related["product_id"]),
    ]


def test_a_new_product_takes_the_last_slot_of_its_categorys_cold_start(
    model: ServingModel,
) -> None:
    from streamrec_recommender.serving import catalog as catalogs

    assert model.content_map is not None
    related = SHOP.products[30]
    new = product(related, product_id="brand-new-4")
    extended = newitems.extend(model, [new], model.content_map)
    categories = {str(p["product_id"]): str(p["category"]) for p in SHOP.products}
    categories["brand-new-4"] = str(related["category"])
    index = catalogs.build(extended, frozenset(), 0, categories, 1)
    ctx = Context(
        model=extended, catalog=index, unavailable=frozenset(), trending=TrendingMirror(),
        profile=None, attributes=None,
    )  # fmt: skip
    engine = Engine(Settings(), ThompsonBandit(["als"]), np.random.default_rng(0))
    res = engine.recommend(Request("stranger", 5, category=str(related["category"])), ctx)
    assert [p for p, _ in res.items][-1] == "brand-new-4"
    assert len(res.items) == 5
    assert res.strategy.startswith("cold_start:category_trending")
    assert res.strategy.endswith("+new_product")
    other = next(str(p["category"]) for p in SHOP.products if p["category"] != related["category"])
    res = engine.recommend(Request("stranger", 5, category=other), ctx)
    assert "brand-new-4" not in [p for p, _ in res.items]
