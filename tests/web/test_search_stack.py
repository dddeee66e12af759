"""``GET /v1/products/search`` (and the catalog reads beside it) on the real stack: trigram
matching with typos, category filter, personal re-ranking, 422 naming the field; and a clear
503 when Postgres cannot be reached."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from streamrec_client import AsyncStreamrecClient
from streamrec_dev.localstack.processes import free_port
from streamrec_dev.localstack.stack import StackDescription
from streamrec_recommender.api.app import create_app
from streamrec_recommender.settings import RecommenderSettings
from streamrec_shared.settings import PostgresSettings

PRODUCTS = [
    {"product_id": "srch-1", "name": "Nordic walnut bookshelf", "category": "srch-home",
     "price": 120.0, "attributes": {"material": "walnut"}},
    {"product_id": "srch-2", "name": "Nordic oak bookshelf", "category": "srch-home",
     "price": 95.0, "attributes": {"material": "oak"}},
    {"product_id": "srch-3", "name": "Trail running shoe", "category": "srch-sport",
     "price": 80.0, "attributes": {"material": "mesh"}},
]  # fmt: skip


async def _search(stack: StackDescription, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.urls["recommender"], timeout=10) as http:
        return await http.get("/v1/products/search", params=params)


async def _stored(stack: StackDescription) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = await _search(stack, q="nordic bookshelf", category="srch-home")
        if r.status_code == 200 and len(r.json()["items"]) == 2:
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the products never became searchable")


@pytest.mark.stack
async def test_search_with_typos_category_and_errors(
    stack: StackDescription, client: AsyncStreamrecClient
) -> None:
    await client.put_products(PRODUCTS)
    await _stored(stack)

    r = await _search(stack, q="nordik walnut bokshelf", k=5)
    assert r.status_code == 200
    assert r.json()["items"][0]["product_id"] == "srch-1"

    r = await _search(stack, q="walnut", category="srch-sport")
    assert r.status_code == 200
    assert r.json()["items"] == []

    r = await _search(stack, category="srch-sport")  # no q: the category's products
    assert [i["product_id"] for i in r.json()["items"]] == ["srch-3"]

    for params, field in (({"q": "shelf", "k": 0}, "k"), ({}, "q"), ({"q": "x" * 201}, "q")):
        r = await _search(stack, **params)
        assert r.status_code == 422, params
        body = r.json()["error"]
        assert body["code"] == "invalid_request"
        assert field in body["message"]

    async with httpx.AsyncClient(base_url=stack.urls["recommender"], timeout=10) as http:
        r = await http.get("/v1/products", params={"ids": "srch-3,nope,srch-1"})
        assert [p["product_id"] for p in r.json()["products"]] == ["srch-3", "srch-1"]
        cats = {c["category"] for c in (await http.get("/v1/categories")).json()["categories"]}
        assert {"srch-home", "srch-sport"} <= cats


@pytest.mark.stack
async def test_search_reranks_for_a_user_with_history(
    stack: StackDescription, client: AsyncStreamrecClient
) -> None:
    await client.put_products(PRODUCTS)
    await _stored(stack)
    user = "srch-user-1"
    await client.send_events(
        [
            {"user_id": user, "event_type": "purchase", "product_id": "srch-2"},
            {"user_id": user, "event_type": "view", "product_id": "srch-2"},
        ]
    )
    deadline = time.monotonic() + 10
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = (await _search(stack, q="nordic bookshelf", user_id=user)).json()
        if body["personalized"]:
            break
        await asyncio.sleep(0.2)
    assert body["personalized"], body
    assert {i["product_id"] for i in body["items"]} == {"srch-1", "srch-2"}
    assert all(i["score"] >= i["similarity"] for i in body["items"])


async def test_search_answers_503_when_postgres_is_down() -> None:
    settings = RecommenderSettings(
        postgres=PostgresSettings(
            dsn=SecretStr(f"postgresql://streamrec@127.0.0.1:{free_port()}/streamrec")
        )
    )
    app = create_app(settings, watch_models=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://rec") as http:
        r = await http.get("/v1/products/search", params={"q": "kettle"})
    assert r.status_code == 503
    assert r.headers["retry-after"]
    assert "Postgres" in r.json()["error"]["message"]
