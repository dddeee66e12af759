"""Trending lists reflect acknowledged events within 1 s (issue 16, point 3).

Through the HTTP APIs of the stack, as a shop would do it: a new product is PUT in a category
and at once bought 200 times (purchase events POSTed in batches, 20 buyers); then
``GET /v1/trending`` and ``GET /v1/trending?category=`` are polled until both list it.

"Within 1 s" is the functional requirement of the issue (lists must reflect acknowledged
events within 1 s of the 202), not a benchmark: the poll's deadline is 1 s after the last
202, and a miss means a path that leaves the list stale for longer than that (a trending
mirror refreshed too rarely, increments counted before the product's category was known,
a product held as undescribed after its description arrived). The trial is repeated, because
such misses depend on where in a refresh cycle or a consumer batch the events land (about 1
try in 4 when reported); every trial's outcome is in the failure message.

The second test takes the other order: the purchases are counted before the product's
description arrives (held as undescribed meanwhile, its events counted in the held list); the
description's 202 must make it appear in both lists within the same 1 s.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from streamrec_client import AsyncStreamrecClient

from ..polling import eventually

pytestmark = [pytest.mark.stack]

TRIALS = 8
PURCHASES = 200
BATCH = 50
BUYERS = 20
DEADLINE_S = 1.0
"""The requirement: listed within this long after the last 202."""
LATE_S = 10.0
"""How long a missed trial goes on being polled, to tell "late" from "never" in the message."""


async def _listed(client: AsyncStreamrecClient, pid: str, category: str | None) -> bool:
    params: dict[str, Any] = {"k": 100}
    if category is not None:
        params["category"] = category
    body = await client.request("GET", "recommender", "/v1/trending", params=params)
    return pid in [i["product_id"] for i in body["items"]]


async def _first_listed(
    client: AsyncStreamrecClient, pid: str, category: str, since: float
) -> dict[str, float | None]:
    """Seconds after ``since`` at which the global and the category's list first showed
    ``pid`` (None: not within ``LATE_S``)."""
    seen: dict[str | None, float | None] = {None: None, category: None}
    while time.monotonic() - since < LATE_S and None in seen.values():
        for cat in [c for c, at in seen.items() if at is None]:
            if await _listed(client, pid, cat):
                seen[cat] = time.monotonic() - since
        await asyncio.sleep(0.02)
    return {"global_s": seen[None], "category_s": seen[category]}


def _purchases(pid: str) -> list[dict[str, Any]]:
    return [
        {"event_id": f"{pid}-{i}", "user_id": f"fr-{pid}-{i % BUYERS}", "event_type": "purchase",
         "timestamp": time.time(), "product_id": pid, "value": 1, "price": 9.5}
        for i in range(PURCHASES)
    ]  # fmt: skip


async def _post(client: AsyncStreamrecClient, events: list[dict[str, Any]]) -> None:
    for lo in range(0, len(events), BATCH):
        accepted = await client.send_events(events[lo : lo + BATCH])
        assert accepted.accepted == len(events[lo : lo + BATCH])


def _late(t: dict[str, Any]) -> bool:
    return any(s is None or s > DEADLINE_S for s in (t["global_s"], t["category_s"]))


Trial = Callable[[AsyncStreamrecClient, str, str], Awaitable[float]]
"""Makes one product ``pid`` of ``category`` trend; returns the monotonic time of the 202
from which the lists must show it."""


async def _run_trials(client: AsyncStreamrecClient, name: str, trials: int, trial: Trial) -> None:
    """``trials`` products made to trend by ``trial``; fails naming every trial's outcome when
    a list did not show one within ``DEADLINE_S``. The products are deleted afterwards (leave
    the stack's lists as they were)."""
    run = uuid.uuid4().hex[:8]
    category = f"{name}-{run}"
    # a running system: the processor has its partitions (a stack just started may still be
    # joining its consumer group, which is startup, not freshness)
    warm = f"warm-{run}"
    await client.send_events([{"user_id": warm, "event_type": "view", "product_id": warm}])

    async def warmed() -> bool:
        return (await client.user_profile(warm)).event_count > 0

    await eventually(warmed, timeout=60, what="the processor applying events", interval=0.05)
    outcomes: list[dict[str, Any]] = []
    try:
        for n in range(trials):
            pid = f"{name}-{run}-{n}"
            since = await trial(client, pid, category)
            outcomes.append({"product": pid, **await _first_listed(client, pid, category, since)})
    finally:
        for t in outcomes:
            await client.delete_product(t["product"])
    print(f"{name}: seconds from the 202 to listed: {outcomes}")
    missed = [t for t in outcomes if _late(t)]
    assert not missed, f"{len(missed)} of {trials} not listed within {DEADLINE_S}s: {outcomes}"


async def _described_then_bought(client: AsyncStreamrecClient, pid: str, category: str) -> float:
    """The new product PUT, then bought ``PURCHASES`` times: from the last 202."""
    await client.put_product(pid, {"name": f"kettle {pid}", "category": category, "price": 9.5})
    await _post(client, _purchases(pid))
    return time.monotonic()


async def _bought_then_described(client: AsyncStreamrecClient, pid: str, category: str) -> float:
    """Bought ``PURCHASES`` times, the purchases applied (held as undescribed meanwhile), then
    PUT: from the PUT's 202."""
    await _post(client, _purchases(pid))

    async def counted() -> bool:  # in the last buyer's profile: the events are applied
        profile = await client.user_profile(f"fr-{pid}-{(PURCHASES - 1) % BUYERS}")
        return pid in profile.purchase_history

    await eventually(counted, timeout=30, what=f"the purchases of {pid}", interval=0.05)
    assert not await _listed(client, pid, None)  # undescribed: held out of every list
    await client.put_product(pid, {"name": f"lamp {pid}", "category": category, "price": 9.5})
    return time.monotonic()


async def test_new_product_bought_200_times_is_trending_within_1s(
    client: AsyncStreamrecClient,
) -> None:
    await _run_trials(client, "fresh", TRIALS, _described_then_bought)


async def test_product_described_after_its_purchases_is_trending_within_1s(
    client: AsyncStreamrecClient,
) -> None:
    await _run_trials(client, "late", 3, _bought_then_described)
