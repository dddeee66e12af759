"""Gradual rollout against the real stack: a new version serves a canary share of users, the
online hit rates decide by themselves (clicks favouring the canary promote it, clicks favouring
the active version roll the next one back), and no request fails during the switch."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from streamrec_client import AsyncStreamrecClient
from streamrec_dev import synthetic
from streamrec_dev.localstack.stack import LocalStack, StackDescription

from ..archive import send_archived
from ..polling import eventually

pytestmark = [pytest.mark.stack, pytest.mark.slow]

ROLLOUT_ENV = {
    "STREAMREC_TRAINING__CANARY_SHARE": "0.5",
    "STREAMREC_TRAINING__ROLLOUT_CHECK_S": "1",
    "STREAMREC_TRAINING__ROLLOUT_MIN_IMPRESSIONS": "60",
    "STREAMREC_TRAINING__INTERVAL_S": "0",
    "STREAMREC_TRAINING__AFTER_EVENTS": "0",
}
PARAMS = {"window_days": 40.0, "gate_tolerance": 1.0}


async def _publish(client: AsyncStreamrecClient) -> int:
    job_id = (await client.request("POST", "trainer", "/v1/train", json={"params": PARAMS}))[
        "job_id"
    ]
    job = await client.wait_for_job(job_id, timeout=300)
    assert job["status"] == "published", job
    return int(job["model_version"])


async def _rollout(client: AsyncStreamrecClient, version: int) -> dict[str, Any] | None:
    models = await client.request("GET", "trainer", "/v1/models")
    found: dict[str, Any] | None = next(
        (m["rollout"] for m in models["models"] if m["version"] == version), None
    )
    return found


async def _traffic(
    client: AsyncStreamrecClient,
    users: list[str],
    favoured: int,
    until: asyncio.Event,
    seen: dict[int, int],
) -> None:
    """Requests for every user in turn; a click on the first item of every answer served by
    version ``favoured`` only. Any failed request raises."""
    while not until.is_set():
        for user in users:
            rec = await client.recommendations(user, k=5)
            version = rec["model_version"]
            seen[version] = seen.get(version, 0) + 1
            if version == favoured and rec["items"]:
                await client.send_events([{
                    "user_id": user, "event_type": "click", "rec_id": rec["rec_id"],
                    "product_id": rec["items"][0]["product_id"],
                }])  # fmt: skip
            if until.is_set():
                return


async def _until_decided(
    client: AsyncStreamrecClient, users: list[str], version: int, favoured: int
) -> tuple[dict[str, Any], dict[int, int]]:
    stop = asyncio.Event()
    seen: dict[int, int] = {}
    traffic = asyncio.create_task(_traffic(client, users, favoured, stop, seen))
    decided: dict[str, Any] = {}

    async def done() -> bool:
        if traffic.done():
            traffic.result()  # a failed request fails the test here
        rollout = await _rollout(client, version)
        if rollout is not None and rollout["state"] != "canary":
            decided.update(rollout)
            return True
        return False

    try:
        await eventually(done, timeout=180, what=f"the rollout of {version} to end", interval=0.5)
    finally:
        stop.set()
        await traffic
    return decided, seen


async def test_canary_is_promoted_or_rolled_back_by_itself(
    local_stack: LocalStack, stack: StackDescription, client: AsyncStreamrecClient
) -> None:
    shop = synthetic.shop(
        n_users=120, n_products=100, events_per_user=25, seed=61, user_prefix="roll",
        days=20, end=datetime.now(UTC),
    )  # fmt: skip
    await client.put_products(shop.products)
    await send_archived(client, stack.postgres_dsn, shop.events)
    local_stack.stop_process("trainer")
    local_stack.start_service("trainer", extra_env=ROLLOUT_ENV)
    local_stack.wait_ready("trainer", timeout=90)
    try:
        base = await _publish(client)
        if await _rollout(client, base) is not None:  # the stack had an active version
            await client.request("POST", "trainer", f"/v1/models/{base}/promote")
        models = await client.request("GET", "trainer", "/v1/models")
        assert models["active_version"] == base

        # a new version: a canary for half of the users, then clicks only on its answers
        new = await _publish(client)
        models = await client.request("GET", "trainer", "/v1/models")
        assert models["active_version"] == base
        assert models["canary_version"] == new
        users = shop.users[:80]
        decided, seen = await _until_decided(client, users, new, favoured=new)
        assert decided["state"] == "promoted", decided
        assert decided["evidence"]["by"] == "auto"
        assert (
            decided["evidence"]["canary"]["hit_rate"] > decided["evidence"]["control"]["hit_rate"]
        )
        assert seen.get(base, 0) > 0
        assert seen.get(new, 0) > 0  # both versions answered during the rollout
        models = await client.request("GET", "trainer", "/v1/models")
        assert models["active_version"] == new
        assert models["canary_version"] is None

        async def everyone_on(version: int) -> bool:
            for user in users[:20]:
                rec = await client.recommendations(user, k=5)
                if rec["model_version"] != version:
                    return False
            return True

        await eventually(lambda: everyone_on(new), timeout=30, what="the promoted version")

        # the next version gets no clicks while the active one does: rolled back
        worse = await _publish(client)
        decided, _ = await _until_decided(client, users, worse, favoured=new)
        assert decided["state"] == "rolled_back", decided
        assert decided["evidence"]["z"] <= -decided["evidence"]["z_crit"]
        models = await client.request("GET", "trainer", "/v1/models")
        assert models["active_version"] == new
        assert models["canary_version"] is None
        await eventually(lambda: everyone_on(new), timeout=30, what="the canary to be dropped")
    finally:
        local_stack.stop_process("trainer")
        local_stack.start_service("trainer")
        local_stack.wait_ready("trainer", timeout=90)
