"""The HTTP app without a stack: Redis, Postgres and Kafka unreachable, a model installed.

Everything must still answer (degraded, 200) except what needs a store to write to.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from streamrec_dev.synthetic_model import make_bundle
from streamrec_recommender.api.app import create_app, with_fast_path
from streamrec_recommender.runtime.model_handle import prepare
from streamrec_recommender.settings import RecommenderSettings


async def _client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=with_fast_path(app))  # as uvicorn serves it
        async with httpx.AsyncClient(transport=transport, base_url="http://rec") as c:
            yield c


@pytest_asyncio.fixture(loop_scope="session")
async def client(offline_settings: RecommenderSettings) -> AsyncIterator[httpx.AsyncClient]:
    s = offline_settings
    model = prepare(make_bundle(n_items=200, n_users=50), s.recommender)
    async for c in _client(create_app(s, model=model, watch_models=False)):
        yield c


@pytest_asyncio.fixture(loop_scope="session")
async def empty_client(
    offline_settings: RecommenderSettings,
) -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(create_app(offline_settings, watch_models=False)):
        yield c


async def get(c: httpx.AsyncClient, path: str, **params: Any) -> httpx.Response:
    return await c.get(path, params=params)


async def test_degraded_answers_are_200_and_say_so(client: httpx.AsyncClient) -> None:
    for user, algorithm in [("u0000001", "auto"), ("u0000001", "als"), ("nobody", "auto"),
                            ("u0000002", "hybrid"), ("u0000002", "popular")]:  # fmt: skip
        r = await get(client, f"/v1/recommendations/{user}", k=5, algorithm=algorithm)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["strategy"].startswith("degraded:"), body
        assert len(body["items"]) == 5
        assert body["rec_id"].startswith("r")
        assert body["model_version"] == 1
        assert body["latency_ms"] >= 0


async def test_k_is_validated(client: httpx.AsyncClient) -> None:
    for k in (0, 101, "x"):
        r = await get(client, "/v1/recommendations/u1", k=k)
        assert r.status_code == 422
        err = r.json()["error"]
        assert err["code"] == "invalid_request"
        assert err["details"][0]["field"] == "k"
    r = await get(client, "/v1/recommendations/u1", algorithm="magic")
    assert r.status_code == 422


async def test_other_read_endpoints(client: httpx.AsyncClient) -> None:
    r = await get(client, "/v1/products/p000003/similar", k=7)
    assert r.status_code == 200
    assert len(r.json()["items"]) == 7
    assert "p000003" not in [i["product_id"] for i in r.json()["items"]]
    assert (await get(client, "/v1/products/nope/similar")).status_code == 404
    r = await get(client, "/v1/trending", k=3, category="books")
    assert r.status_code == 200
    assert r.json()["strategy"] == "degraded:model_popularity"
    assert len(r.json()["items"]) == 3
    r = await client.post("/v1/recommendations/batch", json={"user_ids": ["u0000001", "x"], "k": 2})
    assert r.status_code == 200
    assert [len(x["items"]) for x in r.json()["results"]] == [2, 2]
    r = await client.post("/v1/recommendations/batch", json={"user_ids": [], "k": 2})
    assert r.status_code == 422
    r = await get(client, "/v1/users/u0000001/profile")
    assert r.status_code == 503  # profiles live in Redis only


async def test_writes_without_their_store_are_503_not_500(client: httpx.AsyncClient) -> None:
    body = {"variants": [{"name": "a", "algorithm": "als", "weight": 1},
                         {"name": "b", "algorithm": "popular", "weight": 1}],
            "status": "running"}  # fmt: skip
    r = await client.put("/v1/experiments/exp1", json=body)
    assert r.status_code == 503
    assert "Retry-After" in r.headers
    bad = {**body, "variants": [{"name": "a", "algorithm": "nope", "weight": 1}] * 2}
    r = await client.put("/v1/experiments/exp1", json=bad)
    assert r.status_code == 422
    r = await client.put("/v1/campaigns/c1", json={"boost": 0.5, "start": 0, "end": 10,
                                                   "product_ids": ["p000001"]})  # fmt: skip
    assert r.status_code == 503
    r = await get(client, "/v1/metrics/online", window=3600)
    assert r.status_code == 503


async def test_readiness_needs_a_model_or_a_trending_read(
    client: httpx.AsyncClient, empty_client: httpx.AsyncClient
) -> None:
    assert (await client.get("/readyz")).status_code == 200
    r = await empty_client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"] == {"model_or_trending_read": False}  # Redis unreachable
    # still never a 500: nothing to recommend is an empty, degraded answer
    r = await get(empty_client, "/v1/recommendations/u1")
    assert r.status_code == 200
    assert r.json()["items"] == []
    assert r.json()["strategy"].startswith("degraded:no_model")


@pytest.mark.parametrize("origin", ["https://shop.example"])
async def test_cors_when_configured(origin: str, offline_settings: RecommenderSettings) -> None:
    s = offline_settings
    s.http.cors_origins = [origin]
    async for c in _client(create_app(s, watch_models=False)):
        r = await c.get("/healthz", headers={"Origin": origin})
        assert r.headers.get("access-control-allow-origin") == origin


async def test_a_failing_batch_scorer_still_answers_every_request(
    offline_settings: RecommenderSettings,
) -> None:
    """The batch step is outside the per-request fallback: if it fails, each request is still
    scored on its own (here that fails too, so it gets the degraded fallback), never left
    hanging."""
    s = offline_settings
    model = prepare(make_bundle(n_items=200, n_users=50), s.recommender)
    assert model.exact is not None

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("batch scorer exploded")

    object.__setattr__(model.exact, "top", broken)
    async for c in _client(create_app(s, model=model, watch_models=False)):
        answers = await asyncio.gather(
            *(get(c, f"/v1/recommendations/u000000{i}", k=5, algorithm="als") for i in range(4))
        )
        for r in answers:
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["strategy"].startswith("degraded:error_fallback"), body


async def test_the_error_fallback_serves_the_model_popularity_without_redis(
    offline_settings: RecommenderSettings,
) -> None:
    """Scoring fails and Redis (its trending lists) is down: the answer is still the model's
    popularity held in memory, filtered as any answer, not an empty list."""
    s = offline_settings
    model = prepare(make_bundle(n_items=200, n_users=50), s.recommender)

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("scorer exploded")

    object.__setattr__(model.exact, "top", broken)
    popular = [str(model.item_ids[i]) for i in model.popular.indices[:6].tolist()]
    async for c in _client(create_app(s, model=model, watch_models=False)):
        r = await get(c, "/v1/recommendations/u0000003", k=5, algorithm="als",
                      exclude=popular[0])  # fmt: skip
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["strategy"] == "degraded:error_fallback:model", body
        assert [i["product_id"] for i in body["items"]] == popular[1:6]
        assert body["model_version"] == model.version
