"""The whole system through its HTTP APIs: products and events in, a model trained, personal
recommendations for a known user (never what they bought), popular items for a new user."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

import pytest

from streamrec_client import AsyncStreamrecClient
from streamrec_dev import synthetic

from ..polling import eventually

pytestmark = [pytest.mark.stack, pytest.mark.slow]


async def _archived(client: AsyncStreamrecClient) -> int:
    """Rows in the archive (every test's: compare with a count taken before)."""
    return int((await client.request("GET", "trainer", "/v1/archive"))["interactions"])


async def test_products_and_events_in_model_out(client: AsyncStreamrecClient) -> None:
    # own user ids: other tests on the session stack send shops with the default ones
    shop = synthetic.shop(
        n_users=120,
        n_products=150,
        events_per_user=30,
        seed=11,
        user_prefix="e2e-u",
        end=datetime.now(UTC),
    )
    before = await _archived(client)
    for chunk in synthetic.batches(shop.products, 500):
        await client.put_products(chunk)
    accepted = 0
    for chunk in synthetic.batches(shop.events, 500):
        accepted += (await client.send_events(chunk))["accepted"]
    assert accepted == len(shop.events)

    # the whole shop archived before training (other tests' rows are in the count too)
    await eventually(
        lambda: _archived(client),
        lambda n: n >= before + len(shop.events),
        timeout=60,
        what="the archive to hold the shop's events",
        interval=0.2,
    )

    job = await client.wait_for_job(await client.train(), timeout=240)
    assert job["status"] == "published", job
    version = job["model_version"]
    assert isinstance(version, int)

    purchased: dict[str, set[str]] = defaultdict(set)
    for e in shop.events:
        if e["event_type"] == "purchase":
            purchased[e["user_id"]].add(e["product_id"])
    buyer = max(purchased, key=lambda u: len(purchased[u]))
    n_buyer_events = sum(1 for e in shop.events if e["user_id"] == buyer)

    # the live profile (stream processor) has every event of the buyer
    profile = await eventually(
        lambda: client.request("GET", "recommender", f"/v1/users/{buyer}/profile"),
        lambda p: p["event_count"] >= n_buyer_events,
        timeout=30,
        what=f"the live profile of {buyer}",
        interval=0.2,
    )
    assert profile["event_count"] == n_buyer_events
    assert set(profile["purchase_history"]) == purchased[buyer]

    # the recommender follows models.v1; wait until it serves the new version
    await eventually(
        lambda: client.recommendations(buyer, k=10, algorithm="als"),
        lambda r: r["model_version"] == version,
        timeout=30,
        what=f"the recommender to serve model {version}",
        interval=0.2,
    )
    # the synthetic shop has re-purchases, so the measured rule may show bought items again:
    # ask for the user's unseen items explicitly
    rec = await client.recommendations(buyer, k=10, algorithm="als", include_seen=False)
    items = [i["product_id"] for i in rec["items"]]
    assert len(items) == 10
    assert not set(items) & purchased[buyer], "recommended something the user already bought"
    assert rec["rec_id"]
    assert "popular" not in rec["strategy"], rec["strategy"]
    scores = [i["score"] for i in rec["items"]]
    assert scores == sorted(scores, reverse=True)

    trending = await client.request("GET", "recommender", "/v1/trending", params={"k": 10})
    fresh = await client.recommendations("brand-new-user-xyz", k=10)
    assert fresh["items"], fresh
    assert "cold_start" in fresh["strategy"] or "popular" in fresh["strategy"], fresh["strategy"]
    fresh_items = [i["product_id"] for i in fresh["items"]]
    assert fresh_items == [i["product_id"] for i in trending["items"]][: len(fresh_items)]
    # personal differs from popular for the known user
    assert items != fresh_items
