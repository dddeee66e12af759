"""The recommender end to end, through the HTTP APIs of a running local stack.

- A user's recommendations change within about a second of their events, and never contain
  what they bought, nor inactive or out-of-stock products.
- An experiment splits users deterministically near its weights; clicks on one variant make
  ``/v1/metrics/online`` report it better than control, with a p-value.
- With Redis stopped, recommendations keep coming (200) with a degraded strategy.

A synthetic model (``streamrec_dev.synthetic_model``, products ``p000000``..) is
registered and announced so these tests do not depend on training; if the trainer publishes
another version meanwhile, the tests hold for whatever version serves.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from streamrec_client import ApiError, AsyncStreamrecClient
from streamrec_dev import synthetic
from streamrec_dev.localstack import infra
from streamrec_dev.localstack.stack import LocalStack, StackDescription
from streamrec_dev.synthetic_model import make_bundle
from streamrec_shared.algorithms import REGISTRY
from streamrec_shared.feedback import shown_key
from streamrec_shared.profile import profile_key

from ..bundles import activate_new, cold_user, wait_served
from ..polling import eventually

pytestmark = [pytest.mark.stack]

N_PRODUCTS = 300
EVENT_TIME = 1_737_374_400  # 2025-01-20T12:00Z: inside the synthetic shop's event-time window,
# so these events do not move the training window of other tests in the same stack session
ALGORITHMS = ("auto", *REGISTRY.served)


def ids(rec: dict[str, Any]) -> list[str]:
    return [item["product_id"] for item in rec["items"]]


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def served(stack: StackDescription, module_client: AsyncStreamrecClient) -> int:
    """The catalogue in the stack and a synthetic model serving; returns its version."""
    await module_client.put_products(synthetic.catalog(N_PRODUCTS))
    await activate_new(
        stack, lambda v: make_bundle(version=v, n_items=N_PRODUCTS, n_users=200, factors=16)
    )
    return await wait_served(module_client)


async def test_recommendations_are_fresh_and_filtered(
    client: AsyncStreamrecClient, served: int
) -> None:
    user, cold = await cold_user(client, "fresh", k=20)
    assert cold["rec_id"]

    # Browsing one category: the next answer is personal (recent items), within about 1 s.
    toys = [p["product_id"] for p in synthetic.catalog(N_PRODUCTS) if p["category"] == "toys"]
    events = [
        {
            "event_id": f"{user}-v{i}",
            "user_id": user,
            "event_type": t,
            "product_id": pid,
            "timestamp": EVENT_TIME + i,
        }
        for i, (pid, t) in enumerate(zip(toys[:6], ["view", "click"] * 3, strict=True))
    ]
    sent = time.monotonic()
    await client.send_events(events)

    async def personal() -> dict[str, Any] | None:
        rec = await client.recommendations(user, k=20)
        return rec if "cold_start" not in rec["strategy"] else None

    rec = await eventually(personal, timeout=10, what="recommendations to follow the events")
    freshness = time.monotonic() - sent
    print(f"recommendations changed {freshness:.3f}s after the 202 ({rec['strategy']})")
    assert ids(rec) != ids(cold)

    # A purchase: the item disappears from every later answer.
    bought = ids(rec)[0]
    await client.send_event(
        {"event_id": f"{user}-buy", "user_id": user, "event_type": "purchase",
         "timestamp": EVENT_TIME + 60,
         "product_id": bought, "value": 1, "price": 10.0}
    )  # fmt: skip

    async def purchase_seen() -> bool | None:
        profile = await client.request("GET", "recommender", f"/v1/users/{user}/profile")
        return True if bought in profile["purchase_history"] else None

    await eventually(purchase_seen, timeout=10, what="the purchase in the profile")

    # Out of stock and deactivated: two products the user is being recommended right now.
    current = ids(await client.recommendations(user, k=20, algorithm="als"))
    out_of_stock, inactive = [p for p in current if p != bought][:2]
    product = next(p for p in synthetic.catalog(N_PRODUCTS) if p["product_id"] == out_of_stock)
    await client.put_product(out_of_stock, {**product, "in_stock": False})
    await client.delete_product(inactive)
    changed = time.monotonic()
    forbidden = {bought, out_of_stock, inactive}

    async def filtered() -> bool | None:
        rec = await client.recommendations(user, k=20, algorithm="als")
        return True if not forbidden & set(ids(rec)) else None

    await eventually(filtered, timeout=10, what="unavailable products to leave the answers")
    print(f"unavailable products gone {time.monotonic() - changed:.3f}s after the 202")
    try:
        for algorithm in ALGORITHMS:
            for k in (10, 100):
                rec = await client.recommendations(user, k=k, algorithm=algorithm)
                assert not forbidden & set(ids(rec)), (algorithm, rec)
        similar = await client.request(
            "GET", "recommender", f"/v1/products/{toys[0]}/similar", params={"k": 50}
        )
        assert not {out_of_stock, inactive} & set(ids(similar))
        trending = await client.request("GET", "recommender", "/v1/trending", params={"k": 100})
        assert not {out_of_stock, inactive} & set(ids(trending))
    finally:
        restored = next(p for p in synthetic.catalog(N_PRODUCTS) if p["product_id"] == inactive)
        await client.put_product(out_of_stock, product)
        await client.put_product(inactive, restored)


async def test_response_contract_and_validation(client: AsyncStreamrecClient, served: int) -> None:
    rec = await client.recommendations("u0000003", k=7, exclude="p000001,p000002")
    assert set(rec) >= {
        "user_id", "rec_id", "algorithm", "strategy", "model_version", "items", "latency_ms"
    }  # fmt: skip
    assert len(rec["items"]) == 7
    assert not {"p000001", "p000002"} & set(ids(rec))
    for bad in (0, 101):
        with pytest.raises(ApiError, match="k") as err:
            await client.recommendations("u0000003", k=bad)
        assert err.value.status == 422
        assert err.value.details[0]["field"] == "k"
    books = await client.recommendations("u0000003", k=10, category="books")
    cats = {p["product_id"]: p["category"] for p in synthetic.catalog(N_PRODUCTS)}
    assert books["items"]
    assert {cats[p] for p in ids(books)} == {"books"}
    batch = await client.request(
        "POST", "recommender", "/v1/recommendations/batch",
        json={"user_ids": ["u0000001", "nobody-x"], "k": 3},
    )  # fmt: skip
    assert [r["user_id"] for r in batch["results"]] == ["u0000001", "nobody-x"]


async def _shown_to_known(
    stack: StackDescription, client: AsyncStreamrecClient, user: str, item: dict[str, Any]
) -> dict[str, Any]:
    """``user`` views ``item`` (so Redis knows them), then gets an answer whose shown products
    are recorded (``sr:rs:<user>``): returns that answer."""
    await client.send_event(
        {"event_id": f"{user}-seen", "user_id": user, "event_type": "view",
         "timestamp": EVENT_TIME, "product_id": item["product_id"]}
    )  # fmt: skip
    redis = Redis.from_url(stack.redis_url)
    try:

        async def known() -> bool | None:
            return True if await redis.exists(profile_key(user)) else None

        await eventually(known, timeout=15, what="the buyer's profile")
        answer = await client.recommendations(user, k=5)

        async def recorded() -> bool | None:
            return True if await redis.exists(shown_key(user)) else None

        await eventually(recorded, timeout=15, what="the products shown to the buyer")
    finally:
        await redis.aclose()
    return answer


async def test_experiment_splits_users_and_reports_the_better_variant(
    stack: StackDescription, client: AsyncStreamrecClient, served: int
) -> None:
    name = f"ab{uuid.uuid4().hex[:8]}"
    path = f"/v1/experiments/{name}"
    body = {
        "variants": [
            {"name": "control", "algorithm": "popular", "weight": 0.5},
            {"name": "treat", "algorithm": "als", "weight": 0.5},
        ],
        "status": "running",
    }
    saved = await client.request("PUT", "recommender", path, json=body)
    assert saved["control"] == "control"
    assert (await client.request("GET", "recommender", path))["status"] == "running"
    try:
        users = [f"exp-{name}-{i}" for i in range(300)]

        async def enrolled() -> bool | None:
            rec = await client.recommendations(users[0], k=5)
            return True if rec.get("experiment", {}).get("name") == name else None

        await eventually(enrolled, timeout=15, what="the experiment to reach the recommender")
        answers = {u: await client.recommendations(u, k=5) for u in users}
        variants = {u: a["experiment"]["variant"] for u, a in answers.items()}
        assert {a["experiment"]["name"] for a in answers.values()} == {name}
        again = {
            u: (await client.recommendations(u, k=5))["experiment"]["variant"] for u in users[:60]
        }
        assert all(variants[u] == v for u, v in again.items())  # deterministic
        share = sum(v == "treat" for v in variants.values()) / len(users)
        assert 0.4 <= share <= 0.6, share

        clicks = []
        for i, (user, answer) in enumerate(answers.items()):
            rate = 2 if variants[user] == "treat" else 20  # every 2nd vs every 20th response
            if i % rate == 0 and answer["items"]:
                clicks.append(
                    {"event_id": f"{name}-c{i}", "user_id": user, "event_type": "click",
                     "timestamp": EVENT_TIME + i,
                     "product_id": answer["items"][0]["product_id"], "rec_id": answer["rec_id"]}
                )  # fmt: skip
        # and one purchase *without* rec id of a product the treatment showed: a conversion.
        # What was shown is recorded only for users Redis knows: the buyer views a product first.
        buyer = next(u for u in users if variants[u] == "treat" and answers[u]["items"])
        shown = await _shown_to_known(stack, client, buyer, answers[buyer]["items"][0])
        clicks.append(
            {"event_id": f"{name}-buy", "user_id": buyer, "event_type": "purchase",
             "timestamp": EVENT_TIME + 999, "value": 1, "price": 9.5,
             "product_id": shown["items"][1]["product_id"]}
        )  # fmt: skip
        await client.send_events(clicks)

        async def better() -> dict[str, Any] | None:
            report = await client.request(
                "GET", "recommender", "/v1/metrics/online", params={"window": 3600}
            )
            exp = report["experiments"].get(name)
            if exp is None:
                return None
            treat = exp["variants"].get("treat", {})
            sig = treat.get("significance") or {}
            return exp if sig.get("better") and treat.get("conversions") else None

        exp = await eventually(better, timeout=30, what="the treatment to be reported better")
        treat, control = exp["variants"]["treat"], exp["variants"]["control"]
        print(f"experiment {name}: treat {treat}, control {control}")
        assert treat["impressions"] >= 0.4 * len(users)
        assert treat["hit_rate"] > control["hit_rate"]
        assert treat["significance"]["p_value"] < 0.05
        assert control["control"] is True
    finally:
        body["status"] = "stopped"
        await client.request("PUT", "recommender", path, json=body)

        async def left() -> bool | None:  # later tests on this stack must see no experiment
            rec = await client.recommendations(f"exp-{name}-after", k=5)
            return True if rec.get("experiment") is None else None

        await eventually(left, timeout=15, what="the stopped experiment to leave the recommender")


async def test_campaign_boost_reaches_the_top(client: AsyncStreamrecClient, served: int) -> None:
    user = "u0000007"
    before = ids(await client.recommendations(user, k=10, algorithm="als"))
    target = next(p["product_id"] for p in synthetic.catalog(N_PRODUCTS)[::-1]
                  if p["product_id"] not in before)  # fmt: skip
    name = f"promo{uuid.uuid4().hex[:6]}"
    now = time.time()
    await client.request(
        "PUT", "recommender", f"/v1/campaigns/{name}",
        json={"boost": 3.0, "start": now - 60, "end": now + 600, "product_ids": [target]},
    )  # fmt: skip
    try:

        async def boosted() -> bool | None:
            rec = await client.recommendations(user, k=10, algorithm="als")
            return True if ids(rec)[:1] == [target] else None

        await eventually(boosted, timeout=15, what="the campaign to lift its product")
    finally:
        await client.request("DELETE", "recommender", f"/v1/campaigns/{name}")

    async def back() -> bool | None:
        rec = await client.recommendations(user, k=10, algorithm="als")
        return True if target not in ids(rec) else None

    await eventually(back, timeout=15, what="the campaign's end to take effect")


def _restart_redis(local_stack: LocalStack, stack: StackDescription) -> None:
    port = int(stack.redis_url.rsplit(":", 1)[1].split("/")[0])
    state = Path(stack.state_dir)
    proc = infra.start_redis(port, state / "redis", local_stack.log_dir)
    local_stack._record(proc)


async def test_redis_outage_degrades_but_answers(
    local_stack: LocalStack, stack: StackDescription, client: AsyncStreamrecClient, served: int
) -> None:
    redis = Redis.from_url(stack.redis_url)
    await redis.save()  # the restarted server loads this snapshot: other tests keep their state
    await redis.aclose()
    local_stack.stop_process("redis")
    try:
        for user in ("u0000004", f"nobody-{uuid.uuid4().hex[:6]}", "u0000005"):
            for algorithm in ("auto", "als", "popular"):
                started = time.monotonic()
                rec = await client.recommendations(user, k=10, algorithm=algorithm)
                took = time.monotonic() - started
                assert rec["strategy"].startswith("degraded"), rec
                assert rec["items"], rec
                print(f"{user} {algorithm}: {rec['strategy']} in {took * 1000:.1f} ms")
        trending = await client.request("GET", "recommender", "/v1/trending", params={"k": 5})
        assert trending["items"]
        # Each uvicorn worker has its own registry: look at both (new connections spread).
        seen = False
        for _ in range(20):
            async with httpx.AsyncClient() as http:
                text = (await http.get(stack.urls["recommender"] + "/metrics")).text
            if 'streamrec_recommender_degraded_total{dependency="redis"}' in text:
                seen = True
                break
        assert seen
    finally:
        await asyncio.to_thread(_restart_redis, local_stack, stack)

    async def recovered() -> bool | None:
        rec = await client.recommendations("u0000004", k=10)
        return True if not rec["strategy"].startswith("degraded") else None

    await eventually(recovered, timeout=30, what="the recommender to use Redis again")
