"""A new algorithm plugs in with one registry entry and one module per side, no list edited.

``toy_algorithm/trainer_side.py`` and ``toy_algorithm/serving_side.py`` are written as a plug-in
would write them; this test adds the shared entry, imports the two modules, and follows the
algorithm from the trainer's fit through the saved bundle to an HTTP answer for
``algorithm=toy`` (fast path and route), the bandit's arms and ``auto``'s choice.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from pydantic import ValidationError

from streamrec_recommender import online
from streamrec_recommender.api.app import create_app, with_fast_path
from streamrec_recommender.runtime.model_handle import prepare
from streamrec_recommender.serving.context import Context, Request, TrendingMirror
from streamrec_recommender.serving.engine import Engine, Settings
from streamrec_recommender.serving.model import ServingModel
from streamrec_recommender.serving.policy import (
    ArmStats,
    Experiment,
    ThompsonBandit,
    Variant,
    validate_experiment,
)
from streamrec_recommender.serving.scorers import SCORERS
from streamrec_recommender.settings import RecommenderSettings, ServingSettings
from streamrec_shared import algorithms, rec_ids
from streamrec_shared.artifacts import ModelBundle
from streamrec_trainer import offline
from streamrec_trainer.dataset import Dataset, Interactions, catalog_from_records
from streamrec_trainer.models import AlsParams, ContentParams, ItemKnnParams, TrainParams, fit_all
from streamrec_trainer.models.registry import TRAINERS

HERE = Path(__file__).parent / "toy_algorithm"
N_USERS, N_ITEMS = 30, 12


def _load(name: str) -> None:
    spec = importlib.util.spec_from_file_location(f"toy_algorithm_{name}", HERE / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)


@pytest.fixture(scope="module")
def toy() -> Iterator[None]:
    algorithms.register(algorithms.Algorithm("toy", "t"))  # the one registry entry
    _load("trainer_side")
    _load("serving_side")
    yield
    algorithms.REGISTRY.unregister("toy")
    TRAINERS.pop("toy", None)
    SCORERS.pop("toy", None)


def _dataset() -> Dataset:
    rng = np.random.default_rng(7)
    rows = [
        {
            "user_id": f"u{u}",
            # item p0 is touched by every user, p1 by every other one, ...: a known toy order
            "item_id": f"p{i}",
            "event_type": "view",
            "ts": 1_300_000_000.0 + float(rng.uniform(0, 86_400 * 30)),
        }
        for u in range(N_USERS)
        for i in range(N_ITEMS)
        if u % (i + 1) == 0
    ]
    catalog = catalog_from_records(
        [
            {"product_id": f"p{i}", "category": "A", "price": 1.0 + i, "name": f"thing {i}"}
            for i in range(N_ITEMS)
        ]
    )
    return Dataset(interactions=Interactions.from_records(rows), catalog=catalog)


@pytest.fixture(scope="module")
def bundle(toy: None, tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    params = TrainParams(
        als=AlsParams(factors=4, num_threads=1),
        itemknn=ItemKnnParams(k=5, num_threads=1),
        content=ContentParams(text_buckets=16, attribute_buckets=4),
        similar_n=4,
        topn_n=4,
    )
    fitted = fit_all(_dataset(), params)
    assert "toy" in fitted.scorers()  # fitted like every other algorithm (and evaluated so)
    built = fitted.to_bundle(7)
    assert "toy" in built.algorithms
    directory = tmp_path_factory.mktemp("bundle") / "7"
    built.save(directory)
    return ModelBundle.load(directory)


@pytest.fixture(scope="module")
def model(bundle: ModelBundle) -> ServingModel:
    return prepare(bundle, RecommenderSettings().recommender)


def _expected_top(bundle: ModelBundle, k: int) -> list[str]:
    scores = bundle.extra_files["toy"]["scores"]
    order = np.lexsort((np.arange(scores.size), -scores))[:k]
    return [str(bundle.als.item_ids[i]) for i in order]


def test_the_bundle_carries_the_toy_arrays(bundle: ModelBundle, model: ServingModel) -> None:
    scores = bundle.extra_files["toy"]["scores"]
    assert scores.shape == (N_ITEMS,)
    assert _expected_top(bundle, 1) == ["p0"]  # touched by every user
    np.testing.assert_array_equal(model.arrays["toy"]["scores"], scores)
    assert "toy" in offline.default_grids()  # and streamrec eval evaluates it


async def test_the_recommender_serves_algorithm_toy(
    bundle: ModelBundle, model: ServingModel, offline_settings: RecommenderSettings
) -> None:
    """Redis and Postgres unreachable: degraded answers, still algorithm=toy's items."""
    app = create_app(offline_settings, model=model, watch_models=False)
    async with app.router.lifespan_context(app):
        for asgi in (with_fast_path(app), app):
            transport = httpx.ASGITransport(app=asgi)
            async with httpx.AsyncClient(transport=transport, base_url="http://rec") as client:
                r = await client.get("/v1/recommendations/u3", params={"k": 3, "algorithm": "toy"})
                assert r.status_code == 200, r.text
                body = r.json()
                assert body["algorithm"] == "toy"
                assert [i["product_id"] for i in body["items"]] == _expected_top(bundle, 3)
                assert rec_ids.describe(body["rec_id"], online.ALGORITHM_CODES).algorithm == "toy"  # type: ignore[union-attr]
                bad = await client.get("/v1/recommendations/u3", params={"algorithm": "toyz"})
                assert bad.status_code == 422
                assert "toy" in bad.text  # the error lists the registry's names


def test_the_policy_sees_toy(model: ServingModel) -> None:
    arms = RecommenderSettings().recommender.bandit_arms
    assert "toy" in arms
    # a registered plug-in may be listed as an arm; a name nothing serves stops the settings
    assert ServingSettings(bandit_arms=["toy", "als"]).bandit_arms == ["toy", "als"]
    with pytest.raises(ValidationError, match="'toyz' not served"):
        ServingSettings(bandit_arms=["toy", "toyz"])
    engine = Engine(Settings(), ThompsonBandit(arms), np.random.default_rng(0))
    assert "toy" in engine.available(model)
    stats = {"new": {a: ArmStats(1000, 1) for a in arms} | {"toy": ArmStats(1000, 900)}}
    ctx = Context(model, None, frozenset(), TrendingMirror(), None, None, arm_stats=stats)
    result = engine.recommend(Request("u3", 3), ctx)  # algorithm=auto
    assert result.algorithm == "toy"
    exp = Experiment("t1", "running", (Variant("a", "als", 1.0), Variant("b", "toy", 1.0)))
    assert validate_experiment(exp) == []
