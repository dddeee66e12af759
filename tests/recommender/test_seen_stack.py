"""Repeat consumption end to end: on a shop where nobody has an item twice the trainer publishes
``exclude``, the recommender then never shows a user what the user had, and does with
``include_seen=true``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streamrec_client import AsyncStreamrecClient
from streamrec_dev import synthetic
from streamrec_dev.localstack.stack import StackDescription

from ..archive import send_archived
from ..polling import eventually

pytestmark = [pytest.mark.stack, pytest.mark.slow]


def _without_repeats(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first event of every (user, product): a shop where nothing is had twice."""
    seen: set[tuple[str, str]] = set()
    out = []
    for e in events:
        key = (e["user_id"], e["product_id"])
        if key not in seen:
            seen.add(key)
            out.append(e)
    return out


async def test_seen_items_do_not_come_back_on_a_shop_without_repeats(
    stack: StackDescription, client: AsyncStreamrecClient
) -> None:
    # the last ~day of event time, so that this shop is most of a 1.5-day training window
    # (other tests' shops in the session archive have repeats)
    shop = synthetic.shop(
        n_users=150, n_products=200, events_per_user=30, seed=91, user_prefix="norep",
        start=datetime.now(UTC) - timedelta(days=1.3), days=1.25,
    )  # fmt: skip
    events = _without_repeats(shop.events)
    await client.put_products(shop.products)
    await send_archived(client, stack.postgres_dsn, events)
    body = {"params": {"window_days": 1.5, "gate_tolerance": 1.0}}
    job_id = (await client.request("POST", "trainer", "/v1/train", json=body))["job_id"]
    job = await client.wait_for_job(job_id, timeout=300)
    assert job["status"] == "published", job
    rule = job["metrics"]["seen_rule"]
    assert rule["mode"] == "exclude", rule
    version = job["model_version"]

    history: dict[str, set[str]] = {}
    for e in events:
        history.setdefault(e["user_id"], set()).add(e["product_id"])
    users = sorted(history, key=lambda u: -len(history[u]))[:12]

    async def served() -> bool:
        rec = await client.recommendations(users[0], k=5, algorithm="als")
        return bool(rec["model_version"] == version)

    await eventually(served, timeout=30, what="the recommender to serve the version", interval=0.2)
    came_back = 0
    for user in users:
        rec = await client.recommendations(user, k=30, algorithm="als")
        got = {i["product_id"] for i in rec["items"]}
        assert not got & history[user], (user, sorted(got & history[user]))
        kept = await client.recommendations(user, k=30, algorithm="als", include_seen=True)
        came_back += len({i["product_id"] for i in kept["items"]} & history[user])
    assert came_back > 0  # with include_seen=true the user's own items rank again
