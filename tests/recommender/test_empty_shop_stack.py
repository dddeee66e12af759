"""An empty shop is ready: ``streamrec-stack up`` without ``--demo`` succeeds (every service's
``/readyz`` green with no model and no event), and the recommender's answers say what they
are: an empty list with ``no_model:nothing_trending_yet``, then live trending once events
arrive, in the category asked for and filled up from the global list.

Its own stack (the session stack has models and events from other tests), started and
stopped with the CLI a user would run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from streamrec_dev.localstack.stack import SERVICES
from streamrec_shared import profile

from ..polling import eventually

pytestmark = [pytest.mark.stack]


def _cli(state: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamrec_dev.localstack.cli", "--dir", str(state), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def empty_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("empty-shop")
    up = _cli(state, "up", "--free-ports", "--timeout", "150", timeout=300)
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-4000:]
        yield json.loads((state / "stack.json").read_text())
    finally:
        _cli(state, "down", timeout=120)


async def test_every_service_is_ready_without_a_model(empty_shop: dict[str, Any]) -> None:
    urls = empty_shop["urls"]
    async with httpx.AsyncClient(timeout=10.0) as http:
        for name in SERVICES:
            r = await http.get(urls[name] + "/readyz")
            assert r.status_code == 200, (name, r.text)
        r = await http.get(urls["recommender"] + "/v1/recommendations/first-visitor",
                           params={"k": 5})  # fmt: skip
        assert r.status_code == 200
        body = r.json()
        assert body["items"] == []
        assert body["model_version"] is None
        assert body["strategy"] == "no_model:nothing_trending_yet"


async def test_an_empty_shop_answers_from_live_trending(empty_shop: dict[str, Any]) -> None:
    urls, key = empty_shop["urls"], empty_shop["api_keys"]["admin"]
    async with httpx.AsyncClient(timeout=10.0, headers={"X-API-Key": key}) as http:
        products = [
            {"product_id": f"es{i}", "name": f"thing {i}", "category": cat, "price": 5.0}
            for i, cat in enumerate(["mugs", "mugs", "lamps", "lamps", "lamps"])
        ]
        r = await http.post(urls["ingest"] + "/v1/products", json={"products": products})
        assert r.status_code in (200, 202), r.text
        redis = Redis.from_url(empty_shop["redis_url"])
        try:  # the processor knows their categories before it counts purchases of them

            async def catalogued() -> bool:
                return all([await redis.hexists(profile.CATALOG, p["product_id"])
                            for p in products])  # fmt: skip

            await eventually(catalogued, timeout=30, what="the products in the catalog state")
        finally:
            await redis.aclose()
        events = [{"user_id": f"shopper{n}", "event_type": "purchase", "product_id": p}
                  for n, p in enumerate(["es0", "es2", "es3", "es3", "es4"])]  # fmt: skip
        r = await http.post(urls["ingest"] + "/v1/events", json={"events": events})
        assert r.status_code == 202, r.text

        async def answer() -> dict[str, Any] | None:
            r = await http.get(urls["recommender"] + "/v1/recommendations/newcomer",
                               params={"k": 3, "category": "mugs"})  # fmt: skip
            body: dict[str, Any] = r.json()
            return body if len(body["items"]) == 3 else None

        body = await eventually(answer, timeout=30, what="three trending items")
        got = [i["product_id"] for i in body["items"]]
        assert got[0] == "es0"  # the one mug anybody bought, then the global list
        assert set(got[1:]) <= {"es2", "es3", "es4"}
        assert body["strategy"] == "no_model:category_trending+trending"
        assert body["model_version"] is None
