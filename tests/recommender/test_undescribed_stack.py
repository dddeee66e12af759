"""A product the catalog never described is never recommended (issue 17, point 11).

Through the HTTP APIs of the stack: events for an unknown product id are accepted (the 202 names
it) and count in the profile, but the product appears in no answer (trending, cold start; the
processor holds it in the unavailable set, which every answer excludes) until a PUT describes
it. A described product with the same events is the witness that
the events have reached the trending lists.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from streamrec_client import AsyncStreamrecClient

from ..polling import eventually

pytestmark = [pytest.mark.stack]


def _ids(body: dict[str, Any]) -> list[str]:
    return [i["product_id"] for i in body["items"]]


async def test_undescribed_products_are_never_served_until_described(
    client: AsyncStreamrecClient,
) -> None:
    run = uuid.uuid4().hex[:8]
    ghost, witness = f"ghost-{run}", f"witness-{run}"
    product = {"name": f"lamp {run}", "category": f"cat-{run}", "price": 10.0}
    await client.put_product(witness, product)
    now = time.time()
    events = [
        {"event_id": f"{run}-{p}-{i}", "user_id": f"ud-{run}-{i % 10}", "event_type": "purchase",
         "timestamp": now, "product_id": p, "value": 1, "price": 10.0}
        for i in range(40) for p in (ghost, witness)
    ]  # fmt: skip
    accepted = await client.send_events(events)
    unknown = accepted.unknown_product_ids  # None: that worker has not read the catalog yet
    assert unknown is None or ghost in unknown

    async def trending() -> list[str]:
        body = await client.request("GET", "recommender", "/v1/trending", params={"k": 100})
        return _ids(body)

    described = [witness]
    try:
        seen = await eventually(
            trending, lambda ids: witness in ids, timeout=30, what="the witness trending"
        )
        assert ghost not in seen
        profile = await client.user_profile(f"ud-{run}-0")  # the events are kept
        assert ghost in profile.purchase_history
        cold = await client.recommendations(f"nobody-{run}", k=100)
        assert ghost not in [i.product_id for i in cold.items]

        await client.put_product(ghost, product)  # described now: it may appear
        described.append(ghost)
        await eventually(
            trending, lambda ids: ghost in ids, timeout=30, what="the described product trending"
        )
    finally:  # leave the stack's lists as they were
        for pid in described:
            await client.delete_product(pid)
