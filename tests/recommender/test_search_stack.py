"""``GET /v1/products/search`` (and the catalog reads beside it) on the real stack: word
correction with typos (also of words a product got by an update), partial matches ranked after
full ones, category filter, personal re-ranking, 422 naming the field; a clear 503 when
Postgres cannot be reached; and the query planning of ``adapters.catalog_search`` (pure)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr

from streamrec_client import AsyncStreamrecClient
from streamrec_dev.localstack.processes import free_port
from streamrec_dev.localstack.stack import StackDescription
from streamrec_recommender.adapters.catalog_search import (
    COMMON_FREQUENCY,
    Term,
    WordFrequencies,
    best_score,
    choose_candidates,
    lexeme,
    query_words,
    score_sql,
)
from streamrec_recommender.api.app import create_app
from streamrec_recommender.settings import RecommenderSettings
from streamrec_shared.settings import PostgresSettings

from ..polling import eventually

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


async def _stored(stack: StackDescription, q: str = "nordic bookshelf", n: int = 2) -> None:
    async def found() -> bool:
        r = await _search(stack, q=q, category="srch-home")
        return r.status_code == 200 and len(r.json()["items"]) == n

    await eventually(found, timeout=30, what=f"{q!r} to find the products", interval=0.2)


@pytest_asyncio.fixture(loop_scope="session")
async def searchable(stack: StackDescription, client: AsyncStreamrecClient) -> None:
    """``PRODUCTS`` in the catalog, found by search."""
    await client.put_products(PRODUCTS)
    await _stored(stack)


@pytest.mark.stack
@pytest.mark.usefixtures("searchable")
async def test_search_with_typos_category_and_errors(stack: StackDescription) -> None:
    r = await _search(stack, q="nordik walnut bokshelf", k=5)
    assert r.status_code == 200
    assert r.json()["items"][0]["product_id"] == "srch-1"

    # a word with no near dictionary word is left out; the other words still match
    r = await _search(stack, q="walnut qqxqzz", k=5)
    assert [i["product_id"] for i in r.json()["items"]] == ["srch-1"]

    # every word found first (as typed: similarity 1), then products holding only some
    r = await _search(stack, q="nordic walnut", category="srch-home")
    items = r.json()["items"]
    assert [i["product_id"] for i in items] == ["srch-1", "srch-2"]
    assert items[0]["similarity"] == 1.0 > items[1]["similarity"] > 0

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
async def test_words_a_product_gets_by_an_update_are_corrected_at_once(
    stack: StackDescription, client: AsyncStreamrecClient
) -> None:
    duvet = {"product_id": "srch-4", "name": "Quilted duvet", "category": "srch-home",
             "price": 60.0, "attributes": {"filling": "feathers"}}  # fmt: skip
    await client.put_products([duvet])
    await _stored(stack, "quilted duvet", 1)
    await client.put_products([{**duvet, "name": "Quilted eiderdown"}])
    await _stored(stack, "quilted eiderdown", 1)

    for q in ("eiderdwn", "quilted eiderdon", "fethers"):  # typos of words new to the catalog
        r = await _search(stack, q=q, category="srch-home")
        assert [i["product_id"] for i in r.json()["items"]] == ["srch-4"], q


@pytest.mark.stack
@pytest.mark.usefixtures("searchable")
async def test_search_reranks_for_a_user_with_history(
    stack: StackDescription, client: AsyncStreamrecClient
) -> None:
    user = "srch-user-1"
    await client.send_events(
        [
            {"user_id": user, "event_type": "purchase", "product_id": "srch-2"},
            {"user_id": user, "event_type": "view", "product_id": "srch-2"},
        ]
    )

    async def personal() -> dict[str, Any] | None:
        body: dict[str, Any] = (await _search(stack, q="nordic bookshelf", user_id=user)).json()
        return body if body["personalized"] else None

    body = await eventually(personal, timeout=10, what="a personalized search", interval=0.2)
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


def test_query_words_are_distinct_lower_case_words_of_two_letters_or_more() -> None:
    assert query_words("Espreso-KETLE, a ketle_2 x9 ") == ["espreso", "ketle", "x9"]
    assert query_words(" ,.- ") == []
    assert lexeme("o'neil\\") == "'o''neil\\\\'"


def test_candidates_keep_the_typed_word_or_the_closest_rare_corrections() -> None:
    freqs = WordFrequencies(freq={"red": 0.25, "reds": 0.03}, floor=0.001)
    found = [("kettle", 0.62), ("kettles", 0.55), ("ketchup", 0.31)]
    # within CANDIDATE_WINDOW of the best, best first
    assert choose_candidates("ketle", found, freqs) == [("kettle", 0.62), ("kettles", 0.55)]
    # the catalog has the word as typed: only close alternatives stay
    assert choose_candidates("kettle", [("kettle", 1.0), *found[1:]], freqs) == [("kettle", 1.0)]
    # no correction into a common word, unless it is all there is
    assert choose_candidates("redd", [("reddo", 0.4), ("red", 0.4)], freqs) == [("reddo", 0.4)]
    assert freqs.of("reds") > COMMON_FREQUENCY
    assert choose_candidates("rde", [("reds", 0.3)], freqs) == [("reds", 0.3)]
    assert choose_candidates("zzz", [], freqs) == []


def test_scores_weigh_rare_words_more_and_reach_one_for_exact_words() -> None:
    freqs = WordFrequencies(freq={"pro": 0.1}, floor=0.001)
    rare = Term("bakoner", [("bakoner", 1.0)], freqs.weight("bakoner"), False)
    common = Term("pro", [("pro", 1.0)], freqs.weight("pro"), True)
    assert rare.weight > common.weight >= 1.0
    assert best_score([rare, common]) == pytest.approx(1.0)
    typo = Term("bakonr", [("bakoner", 0.5), ("bakonet", 0.45)], rare.weight, False)
    assert typo.tsquery() == "('bakoner' | 'bakonet')"
    assert typo.tsquery(best_only=True) == "('bakoner')"
    sql, params = score_sql([typo, common], 6)
    assert params == ["'bakoner'", "'bakonet'", "'pro'"]
    assert "$6::tsquery" in sql
    assert "$8::tsquery" in sql
    assert best_score([typo, common]) < best_score([rare, common])
