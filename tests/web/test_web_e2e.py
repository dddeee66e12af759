"""The storefront and the admin console in headless Chromium against the real local stack.

A shop is loaded through the public APIs (its own users, plus one product with a distinctive
name), a model trained; then ``services/web/e2e/storefront.e2e.mjs`` drives the served app
(playwright-core with Debian's /usr/bin/chromium): a search with a typo finds that product;
clicking a recommended product and going home changes "recommended for you" within a second;
add to cart and check out; the console logs in with the admin key and activates an older
model version, which the storefront then shows. Screenshots of every page land in
``tests/web/artifacts/``. Here the results are checked against Postgres and the APIs.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from streamrec_client import AsyncStreamrecClient
from streamrec_dev import synthetic
from streamrec_dev.localstack.stack import StackDescription

from ..polling import eventually
from .webapp import ARTIFACTS, CHROMIUM, WEB, require

pytestmark = [pytest.mark.stack, pytest.mark.slow]

SPECIAL = {
    "product_id": "web-aurora-kettle",
    "name": "Aurora espresso kettle",
    "category": "kitchen",
    "price": 49.5,
    "attributes": {"brand": "aurora", "colour": "copper"},
    "description": "A copper kettle for espresso lovers.",
}


async def _seed(client: AsyncStreamrecClient) -> None:
    shop = synthetic.shop(
        n_users=80,
        n_products=120,
        events_per_user=25,
        seed=23,
        user_prefix="web-u",
        start=datetime.now(UTC) - timedelta(days=31),
    )
    await client.put_products([*shop.products, SPECIAL])
    # the special product is bought with kitchen products: the model knows its neighbours
    kitchen = [p["product_id"] for p in shop.products if p["category"] == "kitchen"][:5]
    now = datetime.now(UTC)
    extra = [
        {
            "user_id": f"web-u{n:05d}",
            "event_type": kind,
            "product_id": pid,
            "timestamp": (now - timedelta(hours=n, minutes=i)).isoformat(),
        }
        for n in range(25)
        for i, (kind, pid) in enumerate(
            [("view", SPECIAL["product_id"]), ("purchase", SPECIAL["product_id"])]
            + [("purchase", p) for p in kitchen[n % 3 : n % 3 + 2]]
        )
    ]
    events = sorted([*shop.events, *extra], key=lambda e: str(e["timestamp"]))
    sent = 0
    for chunk in synthetic.batches(events, 500):
        sent += (await client.send_events(chunk))["accepted"]

    async def archived() -> bool:
        stats = await client.request("GET", "trainer", "/v1/archive")
        return bool(stats["interactions"] >= sent)

    await eventually(archived, timeout=60, what="the shop's events in the archive", interval=0.2)


async def _train(client: AsyncStreamrecClient) -> dict[str, Any]:
    # publish whatever the gate's comparison says: the test needs versions of this shop
    return await client.wait_for_job(await client.train({"gate_tolerance": 1.0}))


async def _models(client: AsyncStreamrecClient) -> dict[str, Any]:
    body: dict[str, Any] = await client.request("GET", "trainer", "/v1/models")
    return body


async def _wait_not_degraded(client: AsyncStreamrecClient) -> None:
    """Earlier tests of the session take Redis or Postgres away and back; wait until the
    recommender reads live profiles again (a "degraded:" strategy means it cannot), else the
    click could not change anything."""

    async def strategy() -> str:
        return str((await client.recommendations("web-u00001", k=5))["strategy"])

    await eventually(
        strategy,
        lambda s: not s.startswith("degraded"),
        timeout=60,
        what="the recommender to read live profiles again (the stack is not whole)",
        interval=0.5,
    )


async def _run_browser(env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "node",
        "e2e/storefront.e2e.mjs",
        cwd=WEB,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=300)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_storefront_and_console_in_chromium(
    stack: StackDescription, client: AsyncStreamrecClient
) -> None:
    require(browser=True, bundle=True)
    assert "web" in stack.urls, "the stack serves the web app when services/web/dist is built"
    await _seed(client)
    await _train(client)
    # a second version: the newest older one to roll back to is then one that knows this shop
    await _train(client)
    models = await _models(client)
    servable = ("published", "retired")  # retired: replaced by a newer one, still loadable
    active = models["active_version"]
    older = [m["version"] for m in models["models"] if m["status"] in servable]
    older = [v for v in older if v != active]
    assert older, f"no published version besides the active one: {models['models']}"
    old_version = max(older)

    await _wait_not_degraded(client)
    shopper = f"web-e2e-{uuid.uuid4().hex[:8]}"
    try:
        code, out, err = await _run_browser(
            {
                "WEB_URL": stack.urls["web"],
                "ADMIN_KEY": stack.api_keys["admin"],
                "SHOPPER": shopper,
                "SEARCH_TYPO": "espreso ketle",
                "SEARCH_EXPECT": SPECIAL["product_id"],
                "OLD_VERSION": str(old_version),
                "ARTIFACTS": str(ARTIFACTS),
                "CHROMIUM": CHROMIUM,
            }
        )
        lines = [line for line in out.splitlines() if line.startswith("{")]
        report = f"browser run failed ({code}):\n{out[-4000:]}\n{err[-4000:]}"
        assert code == 0, report
        assert lines, report
        summary = json.loads(lines[-1])

        # search with a typo found the product
        assert SPECIAL["product_id"] in summary["search_hits"]
        # the click changed "recommended for you" (the script waited at most a second)
        assert summary["recs_after"] != summary["recs_before"]
        # checkout created the order in Postgres, for the demo shopper, with the product
        conn = await asyncpg.connect(stack.postgres_dsn)
        try:
            order = await conn.fetchrow(
                "SELECT user_id, total FROM orders WHERE order_id = $1", summary["order_id"]
            )
            items = await conn.fetch(
                "SELECT product_id, quantity FROM order_items WHERE order_id = $1",
                summary["order_id"],
            )
        finally:
            await conn.close()
        assert order is not None, f"order {summary['order_id']} not in Postgres"
        assert order["user_id"] == shopper
        assert [(r["product_id"], r["quantity"]) for r in items] == [(SPECIAL["product_id"], 1)]
        # the console's activation is what the registry and the storefront now serve
        assert (await _models(client))["active_version"] == old_version
        assert summary["storefront_model_version"] == old_version
        recs = await client.recommendations(shopper, k=5)
        assert recs["model_version"] == old_version
        # screenshots of every page, and a browser console free of errors
        shots = sorted(p.name for p in ARTIFACTS.glob("*.png"))
        for name in ("01-home", "02-search", "03-product", "06-cart", "09-admin-models"):
            assert f"{name}.png" in shots
        assert summary["console_errors"] == []
    finally:
        await client.request("POST", "trainer", f"/v1/models/{active}/activate")
