"""The recommender's per-client read limit (``api.limits``): the app as uvicorn serves it (read
limit, fast path, FastAPI), Redis and the rest unreachable (the limit needs none of them)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio

from streamrec_recommender.api.app import create_app, with_fast_path
from streamrec_recommender.settings import RecommenderSettings
from streamrec_shared.settings import ApiKey, hash_key

BURST = 3


@pytest_asyncio.fixture(loop_scope="session")
async def limited(offline_settings: RecommenderSettings) -> AsyncIterator[httpx.AsyncTransport]:
    s = offline_settings
    s.recommender.read_rate_per_s = 0.01  # no token comes back during the test
    s.recommender.read_burst = BURST
    s.auth.api_keys = [
        ApiKey(
            name="shop",
            sha256=hash_key("shop-key"),
            scopes=["events:write"],
            burst=BURST,
            rate_per_s=0.01,
        )
    ]
    app = create_app(s, watch_models=False)
    async with app.router.lifespan_context(app):
        yield httpx.ASGITransport(app=with_fast_path(app), client=("10.0.0.1", 1234))


def _client(transport: httpx.AsyncTransport, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport, base_url="http://rec", headers=headers)


async def test_a_burst_over_the_limit_gets_429_naming_it(
    limited: httpx.AsyncTransport,
) -> None:
    async with _client(limited) as c:
        for _ in range(BURST):  # the fast path's route and FastAPI's share the bucket
            assert (await c.get("/v1/recommendations/u1")).status_code == 200
        r = await c.get("/v1/trending")
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) >= 1
        error = r.json()["error"]
        assert error["code"] == "rate_limited"
        assert error["details"] == {"field": "client", "rate_per_s": 0.01, "burst": BURST}
        assert (await c.get("/v1/recommendations/u1")).status_code == 429
        assert (await c.get("/healthz")).status_code == 200  # probes are not reads


async def test_limits_are_per_client_and_per_key(offline_settings: RecommenderSettings) -> None:
    s = offline_settings
    s.recommender.read_rate_per_s = 0.01
    s.recommender.read_burst = 1
    s.auth.api_keys = [
        ApiKey(
            name="shop",
            sha256=hash_key("shop-key"),
            scopes=["events:write"],
            burst=2,
            rate_per_s=0.01,
        )
    ]
    app = create_app(s, watch_models=False)
    async with app.router.lifespan_context(app):
        served = with_fast_path(app)
        for host in ("10.0.0.1", "10.0.0.2"):  # each address has its own bucket
            transport = httpx.ASGITransport(app=served, client=(host, 1))
            async with _client(transport) as c:
                assert (await c.get("/v1/recommendations/u1")).status_code == 200
                assert (await c.get("/v1/recommendations/u1")).status_code == 429
        transport = httpx.ASGITransport(app=served, client=("10.0.0.1", 1))
        async with _client(transport, **{"X-API-Key": "shop-key"}) as c:  # the key's own
            assert (await c.get("/v1/recommendations/u1")).status_code == 200
            assert (await c.get("/v1/recommendations/u1")).status_code == 200
            assert (await c.get("/v1/recommendations/u1")).status_code == 429
        async with _client(transport, **{"X-API-Key": "made-up"}) as c:  # not a way around it
            assert (await c.get("/v1/recommendations/u1")).status_code == 429


async def test_a_batch_costs_one_read_per_user(limited: httpx.AsyncTransport) -> None:
    async with _client(limited) as c:
        r = await c.post("/v1/recommendations/batch", json={"user_ids": ["a", "b", "c", "d"]})
        assert r.status_code == 429
        assert r.json()["error"]["code"] == "rate_limited"
